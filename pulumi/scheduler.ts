/**
 * Where the scheduler API runs: one on-demand instance from the worker image, in an Auto
 * Scaling group of one (./scheduler-group.ts: a dead or unhealthy instance is replaced), with the
 * scheduler role, running shardfleet-scheduler.service with `SHARDFLEET_CAPACITY=ec2`, behind an
 * internet-facing Application Load Balancer in the stack's subnets (two AZs or more).
 *
 * The load balancer terminates TLS (HTTPS on 443 with the configured ACM certificate; port 80
 * only redirects) and admits the admin CIDR only; the instance admits API_PORT only from the
 * load balancer's security group. A dev stack may instead set `apiPlainHttp`: the load
 * balancer then forwards plain HTTP on 80. With an API token the scheduler also wants a bearer
 * token (it reads the SSM parameter named in its settings at start); without one the CIDR is
 * the only gate. An on-demand instance because the scheduler holds the fleet's state in memory
 * between ticks and must not be reclaimed like a spot worker; an ALB rather than a proxy on the
 * instance so that the certificate stays in ACM (renewed there, never on disk) and a replaced
 * instance keeps the same endpoint.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { HEALTH_PATH } from "../src/scheduler/api/health-routes.ts";
import { KEEP_ALIVE_TIMEOUT_MS } from "../src/scheduler/api/keep-alive.ts";
import { envFileUserData, serviceEnv, type WorkerBootSettings } from "./compute.ts";
import type { ApiSettings } from "./config.ts";
import { schedulerGroup } from "./scheduler-group.ts";

/** `SHARDFLEET_API_PORT` on the instance, and the only inbound port of its security group. */
const API_PORT = 8080;
/** The file the image's shardfleet-scheduler.service reads (ami/ansible shardfleet_scheduler). */
const DEFAULT_ROOT_DEVICE_NAME = "/dev/xvda";
const SCHEDULER_ENV_FILE = "/etc/shardfleet/scheduler.env";
/** TLS 1.3 and 1.2 with forward-secret AEAD ciphers only. */
const TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06";
/**
 * After the last byte of an upload the client waits, with nothing sent either way, while the
 * scheduler completes the S3 upload and reads the workbook's header row (the whole workbook
 * when Excel wrote it). For a workbook near the default upload limit (512 MB,
 * `SHARDFLEET_MAX_UPLOAD_MB`) that can outlast the ALB's default of 60 s, which would cut the
 * connection before the 202 arrives.
 *
 * It must stay below the scheduler's keep-alive timeout (KEEP_ALIVE_TIMEOUT_MS), so that the
 * load balancer, not the target, closes idle connections: a target that closes first races
 * the load balancer's next request on that connection, which then gets a 502 (ALB user guide,
 * "Connection idle timeout").
 */
export const IDLE_TIMEOUT_SECONDS = 900;
if (IDLE_TIMEOUT_SECONDS * 1000 >= KEEP_ALIVE_TIMEOUT_MS) {
  throw new Error(
    `the load balancer's idle timeout (${IDLE_TIMEOUT_SECONDS} s) must stay below the ` +
      `scheduler's keep-alive timeout (${KEEP_ALIVE_TIMEOUT_MS} ms, src/scheduler/api/keep-alive.ts)`,
  );
}

export interface SchedulerArgs {
  readonly amiId: string;
  readonly instanceType: string;
  readonly instanceProfileName: pulumi.Input<string>;
  readonly vpcId: pulumi.Input<string>;
  /**
   * Public subnets in two AZs or more: the load balancer spans them all, the scheduler may run in
   * any of them, and the fleet manager may launch workers in all.
   */
  readonly subnetIds: pulumi.Input<string[]>;
  /** The only source allowed to reach the load balancer. */
  readonly adminCidr: string;
  /** The listener (HTTPS or dev-only HTTP) and the optional DNS name. */
  readonly api: ApiSettings;
  /** The workers' settings (serviceEnv) and the scheduler's own. */
  readonly settings: WorkerBootSettings & {
    readonly spotEventsQueueUrl: pulumi.Input<string>;
    readonly launchTemplateId: pulumi.Input<string>;
    readonly instanceTypes: readonly string[];
    /** The SSM parameter with the API's tokens (its name only); absent: no authentication. */
    readonly apiTokenParameterName?: pulumi.Input<string>;
  };
  /** The image's root device name (its volume is encrypted). @default "/dev/xvda" */
  readonly rootDeviceName?: string;
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

/**
 * Load balancer and target group names are at most 32 characters, and Pulumi appends "-" and
 * 7 random ones to the logical name, so that may be 24 at most.
 */
function elbName(name: string, suffix: string): string {
  return `${name.slice(0, 24 - suffix.length)}${suffix}`;
}

export class SchedulerComponent extends pulumi.ComponentResource {
  /** `https://<apiDomainName or load balancer name>` (`http://` with apiPlainHttp). */
  public readonly apiEndpoint: pulumi.Output<string>;
  /** The load balancer's own DNS name, for a CNAME (or alias) record managed elsewhere. */
  public readonly apiLoadBalancerDnsName: pulumi.Output<string>;
  /** The scheduler's Auto Scaling group of one (its instance is replaced when unhealthy). */
  public readonly autoScalingGroupName: pulumi.Output<string>;
  /** CloudWatch dimensions of the API's load balancer and target group (alarms). */
  public readonly loadBalancerArnSuffix: pulumi.Output<string>;
  public readonly targetGroupArnSuffix: pulumi.Output<string>;

  constructor(name: string, args: SchedulerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:scheduler:Scheduler", name, {}, opts);
    const parent = { parent: this };
    const { albGroup, group } = securityGroups(name, args, parent);
    const subnetIds = pulumi.output(args.subnetIds);
    const userData = schedulerUserData(args.settings, subnetIds);

    const { alb, targetGroup } = apiLoadBalancer(name, args, albGroup, subnetIds, parent);
    // The instance: an Auto Scaling group of one, registered with the target group.
    const { group: autoScalingGroup } = schedulerGroup(
      name,
      {
        amiId: args.amiId,
        instanceType: args.instanceType,
        instanceProfileName: args.instanceProfileName,
        securityGroupId: group.id,
        subnetIds,
        rootDeviceName: args.rootDeviceName ?? DEFAULT_ROOT_DEVICE_NAME,
        userData,
        targetGroupArn: targetGroup.arn,
        tags: args.tags,
      },
      this,
    );

    this.apiEndpoint = apiEndpoint(name, args.api, alb, parent);
    this.apiLoadBalancerDnsName = alb.dnsName;
    this.autoScalingGroupName = autoScalingGroup.name;
    this.loadBalancerArnSuffix = alb.arnSuffix;
    this.targetGroupArnSuffix = targetGroup.arnSuffix;
    this.registerOutputs({
      apiEndpoint: this.apiEndpoint,
      apiLoadBalancerDnsName: this.apiLoadBalancerDnsName,
      autoScalingGroupName: this.autoScalingGroupName,
    });
  }
}

type Parent = { parent: pulumi.Resource };

/**
 * The load balancer's group (listener ports from the admin CIDR only) and the instance's (the
 * API port from the load balancer's group only).
 */
function securityGroups(
  name: string,
  args: SchedulerArgs,
  parent: Parent,
): { albGroup: aws.ec2.SecurityGroup; group: aws.ec2.SecurityGroup } {
  const https = args.api.listener.protocol === "HTTPS";
  // HTTPS: 443 serves, 80 only redirects. Plain HTTP (dev): 80 serves.
  const listenPorts = https ? [443, 80] : [80];
  const albGroup = new aws.ec2.SecurityGroup(
    `${name}-alb-sg`,
    {
      vpcId: args.vpcId,
      // Fixed: a changed description would replace the group.
      description: "shardfleet API load balancer: listener ports from the admin CIDR only",
      ingress: listenPorts.map((port) => ({
        description:
          port === 443
            ? "shardfleet API (HTTPS)"
            : https
              ? "redirect to HTTPS"
              : "shardfleet API (plain HTTP, dev)",
        protocol: "tcp",
        fromPort: port,
        toPort: port,
        cidrBlocks: [args.adminCidr],
      })),
      // The load balancer opens connections only to its registered target (and health
      // checks), both on the API port. Naming the instance's group here instead would make
      // the two groups refer to each other.
      egress: [
        { protocol: "tcp", fromPort: API_PORT, toPort: API_PORT, cidrBlocks: ["0.0.0.0/0"] },
      ],
      tags: args.tags,
    },
    parent,
  );

  const group = new aws.ec2.SecurityGroup(
    `${name}-sg`,
    {
      vpcId: args.vpcId,
      description: `shardfleet scheduler: API port ${API_PORT} from its load balancer only`,
      ingress: [
        {
          description: "shardfleet API from the load balancer",
          protocol: "tcp",
          fromPort: API_PORT,
          toPort: API_PORT,
          securityGroups: [albGroup.id],
        },
      ],
      egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }],
      tags: args.tags,
    },
    parent,
  );
  return { albGroup, group };
}

/** User data that writes the scheduler's env file and runs the scheduler instead of a worker. */
function schedulerUserData(
  s: SchedulerArgs["settings"],
  subnetIds: pulumi.Output<string[]>,
): pulumi.Output<string> {
  // An object of inputs rather than pulumi.all's tuple, which types eight elements at most.
  return pulumi
    .output({
      ...serviceEnv(s),
      SHARDFLEET_SPOT_EVENTS_QUEUE_URL: s.spotEventsQueueUrl,
      SHARDFLEET_API_HOST: "0.0.0.0",
      SHARDFLEET_API_PORT: String(API_PORT),
      // Behind the load balancer: its X-Forwarded-For names the client (per-address limits).
      SHARDFLEET_API_TRUSTED_PROXIES: "1",
      SHARDFLEET_CAPACITY: "ec2",
      SHARDFLEET_EC2_LAUNCH_TEMPLATE: s.launchTemplateId,
      SHARDFLEET_EC2_SUBNETS: subnetIds.apply((ids) => ids.join(",")),
      SHARDFLEET_EC2_INSTANCE_TYPES: s.instanceTypes.join(","),
      // Without apiToken the run has warned: the API is open to adminCidr, which the
      // scheduler (listening beyond loopback) refuses unless told so, and then warns of.
      ...(s.apiTokenParameterName === undefined
        ? { SHARDFLEET_API_ALLOW_ANONYMOUS: "true" }
        : { SHARDFLEET_API_TOKEN_SSM_PARAMETER: s.apiTokenParameterName }),
    })
    .apply((env) =>
      envFileUserData(
        SCHEDULER_ENV_FILE,
        env,
        // The image enables the worker at boot; this instance is the scheduler instead.
        [
          "systemctl disable --now shardfleet-worker.service",
          "systemctl enable shardfleet-scheduler.service",
          "systemctl restart shardfleet-scheduler.service",
        ],
      ),
    );
}

/** The target group (health-checked on the API port), the load balancer and its listeners. */
function apiLoadBalancer(
  name: string,
  args: SchedulerArgs,
  albGroup: aws.ec2.SecurityGroup,
  subnetIds: pulumi.Output<string[]>,
  parent: Parent,
): { alb: aws.lb.LoadBalancer; targetGroup: aws.lb.TargetGroup } {
  const listener = args.api.listener;
  const https = listener.protocol === "HTTPS";
  const targetGroup = new aws.lb.TargetGroup(
    elbName(name, "-api"),
    {
      vpcId: args.vpcId,
      targetType: "instance",
      protocol: "HTTP",
      port: API_PORT,
      healthCheck: {
        protocol: "HTTP",
        path: HEALTH_PATH,
        port: "traffic-port",
        matcher: "200",
        interval: 15,
        healthyThreshold: 2,
        unhealthyThreshold: 3,
      },
      tags: args.tags,
    },
    parent,
  );

  const alb = new aws.lb.LoadBalancer(
    elbName(name, "-alb"),
    {
      loadBalancerType: "application",
      internal: false,
      securityGroups: [albGroup.id],
      subnets: subnetIds,
      idleTimeout: IDLE_TIMEOUT_SECONDS,
      dropInvalidHeaderFields: true,
      tags: args.tags,
    },
    parent,
  );

  const forward = [{ type: "forward", targetGroupArn: targetGroup.arn }];
  if (listener.protocol === "HTTPS") {
    new aws.lb.Listener(
      `${name}-https`,
      {
        loadBalancerArn: alb.arn,
        port: 443,
        protocol: "HTTPS",
        sslPolicy: TLS_POLICY,
        certificateArn: listener.certificateArn,
        defaultActions: forward,
        tags: args.tags,
      },
      parent,
    );
  }
  new aws.lb.Listener(
    `${name}-http`,
    {
      loadBalancerArn: alb.arn,
      port: 80,
      protocol: "HTTP",
      defaultActions: https
        ? [
            {
              type: "redirect",
              redirect: { protocol: "HTTPS", port: "443", statusCode: "HTTP_301" },
            },
          ]
        : forward,
      tags: args.tags,
    },
    parent,
  );
  return { alb, targetGroup };
}

/** The API's URL, and the DNS alias for it when the stack names a domain and zone. */
function apiEndpoint(
  name: string,
  api: ApiSettings,
  alb: aws.lb.LoadBalancer,
  parent: Parent,
): pulumi.Output<string> {
  const { domainName, hostedZoneId } = api;
  if (domainName !== undefined && hostedZoneId !== undefined) {
    new aws.route53.Record(
      `${name}-api-dns`,
      {
        zoneId: hostedZoneId,
        name: domainName,
        type: "A",
        aliases: [{ name: alb.dnsName, zoneId: alb.zoneId, evaluateTargetHealth: true }],
      },
      parent,
    );
  }
  // The certificate covers apiDomainName, never the load balancer's own name: without a
  // domain, an HTTPS client must connect through a CNAME of its own (docs/deploy.md).
  const scheme = api.listener.protocol === "HTTPS" ? "https" : "http";
  return domainName === undefined
    ? pulumi.interpolate`${scheme}://${alb.dnsName}`
    : pulumi.output(`${scheme}://${domainName}`);
}
