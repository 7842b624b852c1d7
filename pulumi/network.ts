/**
 * Where instances run: a VPC with one public subnet in each of two availability zones and an
 * internet gateway, or a configured existing VPC and subnets. Workers need outbound access only
 * (S3, SQS, the APIs they call); instead of a NAT gateway, which costs more per hour than a
 * small fleet, they get public addresses and a security group that admits nothing inbound.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface NetworkArgs {
  /** Use this VPC and these subnets instead of creating a VPC. @default a new VPC */
  readonly existing?: { readonly vpcId: string; readonly subnetIds: readonly string[] };
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

/** Room for ~4000 instances per subnet; private range unlikely to clash with a peered VPC. */
const VPC_CIDR = "10.42.0.0/16";
const SUBNET_CIDRS = ["10.42.0.0/20", "10.42.16.0/20"] as const;

export class NetworkComponent extends pulumi.ComponentResource {
  public readonly vpcId: pulumi.Output<string>;
  /** The subnets the fleet manager may launch in (`SHARDFLEET_EC2_SUBNETS`), one per AZ. */
  public readonly subnetIds: pulumi.Output<string[]>;
  /** The workers' security group: no inbound rule, all outbound. */
  public readonly workerSecurityGroupId: pulumi.Output<string>;
  public readonly workerSecurityGroupArn: pulumi.Output<string>;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:network:Network", name, {}, opts);
    const parent = { parent: this };

    if (args.existing) {
      this.vpcId = pulumi.output(args.existing.vpcId);
      this.subnetIds = pulumi.output([...args.existing.subnetIds]);
    } else {
      const vpc = new aws.ec2.Vpc(
        `${name}-vpc`,
        {
          cidrBlock: VPC_CIDR,
          enableDnsHostnames: true,
          enableDnsSupport: true,
          tags: args.tags,
        },
        parent,
      );
      const gateway = new aws.ec2.InternetGateway(
        `${name}-igw`,
        { vpcId: vpc.id, tags: args.tags },
        parent,
      );
      const routes = new aws.ec2.RouteTable(
        `${name}-public`,
        {
          vpcId: vpc.id,
          routes: [{ cidrBlock: "0.0.0.0/0", gatewayId: gateway.id }],
          tags: args.tags,
        },
        parent,
      );
      const zones = aws.getAvailabilityZonesOutput({ state: "available" }, parent);
      const subnets = SUBNET_CIDRS.map((cidrBlock, i) => {
        const subnet = new aws.ec2.Subnet(
          `${name}-public-${i}`,
          {
            vpcId: vpc.id,
            cidrBlock,
            availabilityZone: zones.names.apply((names) => {
              const zone = names[i];
              if (zone === undefined) {
                throw new pulumi.RunError(
                  `the region has ${names.length} available zones; the stack needs two`,
                );
              }
              return zone;
            }),
            mapPublicIpOnLaunch: true,
            tags: args.tags,
          },
          parent,
        );
        new aws.ec2.RouteTableAssociation(
          `${name}-public-${i}`,
          { subnetId: subnet.id, routeTableId: routes.id },
          parent,
        );
        return subnet;
      });
      this.vpcId = vpc.id;
      this.subnetIds = pulumi.all(subnets.map((s) => s.id));
    }

    const workers = new aws.ec2.SecurityGroup(
      `${name}-worker-sg`,
      {
        vpcId: this.vpcId,
        description: "shardfleet workers: no inbound, all outbound",
        // An explicit empty list makes Pulumi remove any inbound rule added by hand.
        ingress: [],
        egress: [
          {
            protocol: "-1",
            fromPort: 0,
            toPort: 0,
            cidrBlocks: ["0.0.0.0/0"],
          },
        ],
        tags: args.tags,
      },
      parent,
    );

    this.workerSecurityGroupId = workers.id;
    this.workerSecurityGroupArn = workers.arn;
    this.registerOutputs({
      vpcId: this.vpcId,
      subnetIds: this.subnetIds,
      workerSecurityGroupId: this.workerSecurityGroupId,
    });
  }
}
