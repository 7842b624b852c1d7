/**
 * The API's bearer token(s) (config `apiToken`, a secret) as an SSM Parameter Store
 * SecureString under the account's AWS-managed `aws/ssm` key. The scheduler reads it once at
 * start (`SHARDFLEET_API_TOKEN_SSM_PARAMETER`, the parameter's name): the value never appears
 * in user data, which anyone who may describe the instance can read.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface ApiTokenArgs {
  /** One token a line (two during a rotation); kept secret in state and outputs. */
  readonly token: pulumi.Input<string>;
  /** Tags for the parameter. */
  readonly tags: Record<string, string>;
}

export class ApiTokenComponent extends pulumi.ComponentResource {
  /** For `SHARDFLEET_API_TOKEN_SSM_PARAMETER` (not a secret). */
  public readonly parameterName: pulumi.Output<string>;
  /** The only resource of the scheduler's `ssm:GetParameter`. */
  public readonly parameterArn: pulumi.Output<string>;

  constructor(name: string, args: ApiTokenArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:secrets:ApiToken", name, {}, opts);

    // Autonamed from the prefix (plus a random suffix), like the other resources. No keyId:
    // the AWS-managed aws/ssm key, whose policy lets the account's principals decrypt
    // through SSM, so ssm:GetParameter on this parameter is all the scheduler needs.
    const parameter = new aws.ssm.Parameter(
      name,
      {
        type: "SecureString",
        value: pulumi.secret(args.token),
        description: "shardfleet API bearer tokens, one a line (read by the scheduler at start)",
        tags: args.tags,
      },
      { parent: this },
    );

    this.parameterName = parameter.name;
    this.parameterArn = parameter.arn;
    this.registerOutputs({ parameterName: this.parameterName, parameterArn: this.parameterArn });
  }
}
