/**
 * The log group that the image's optional log shipping (Fluent Bit, ami/ansible role
 * shardfleet_log_shipping) writes the worker's and scheduler's journald lines to, one stream per
 * instance. The stack always creates it, so an image built with or without shipping runs
 * against the same stack; instances learn its name from user data (`CLOUDWATCH_LOG_GROUP`).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

export interface LogsArgs {
  /** Days CloudWatch keeps each event; one of CloudWatch's retention values (config.ts). */
  readonly retentionInDays: number;
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

export class LogsComponent extends pulumi.ComponentResource {
  /** For `CLOUDWATCH_LOG_GROUP` in both settings files, and `aws logs tail`. */
  public readonly logGroupName: pulumi.Output<string>;
  /** The group's ARN without the `:*` suffix (@pulumi/aws v7 strips it). */
  public readonly logGroupArn: pulumi.Output<string>;

  constructor(name: string, args: LogsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:logs:Logs", name, {}, opts);

    // Autonamed from the prefix (plus a random suffix), like the bucket and the queues.
    const group = new aws.cloudwatch.LogGroup(
      `${name}-logs`,
      { retentionInDays: args.retentionInDays, tags: args.tags },
      { parent: this },
    );

    this.logGroupName = group.name;
    this.logGroupArn = group.arn;
    this.registerOutputs({ logGroupName: this.logGroupName, logGroupArn: this.logGroupArn });
  }
}
