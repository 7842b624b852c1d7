/**
 * Notifications and alarms: the scheduler's permission to send email through SES (when
 * `shardfleet:sesFromAddress` is set), and CloudWatch alarms on dead-letter depth, scheduler
 * health and fleet spend per hour, sent to an SNS topic (emailed to `shardfleet:alarmEmail`).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

export interface MonitoringSettings {
  /** The From address the scheduler may send as through SES; unset: no SES permission. */
  readonly sesFromAddress?: string;
  /** Where alarm notifications are emailed (an SNS email subscription, confirmed by mail). */
  readonly alarmEmail?: string;
  /** Alarm when the fleet's hourly spend goes over this (USD); unset: no spend alarm. */
  readonly alarmHourlyUsd?: number;
}

export function readMonitoringSettings(
  config: pulumi.Config = new pulumi.Config(),
): MonitoringSettings {
  const email = (key: string) => {
    const value = config.get(key);
    if (!value) return undefined;
    if (!EMAIL.test(value)) {
      throw new pulumi.RunError(`${config.name}:${key} must be an email address, got ${value}`);
    }
    return value;
  };
  const sesFromAddress = email("sesFromAddress");
  const alarmEmail = email("alarmEmail");
  const hourly = config.getNumber("alarmHourlyUsd", { min: 0 }) ?? 0;
  return Object.freeze({
    ...(sesFromAddress ? { sesFromAddress } : {}),
    ...(alarmEmail ? { alarmEmail } : {}),
    ...(hourly > 0 ? { alarmHourlyUsd: hourly } : {}),
  });
}

/** The log line the scheduler writes every minute (src/scheduler/metrics/spend-log.ts). */
export const SPEND_LOG_MESSAGE = "fleet spend";
export const SPEND_METRIC = { namespace: "Shardfleet", name: "FleetHourlyUsd" } as const;

export interface MonitoringArgs {
  readonly settings: MonitoringSettings;
  readonly schedulerRoleArn: pulumi.Input<string>;
  readonly dlqName: pulumi.Input<string>;
  /** The API load balancer's and target group's ARN suffixes (CloudWatch dimensions). */
  readonly loadBalancerArnSuffix: pulumi.Input<string>;
  readonly targetGroupArnSuffix: pulumi.Input<string>;
  /** The log group the scheduler's lines are shipped to. */
  readonly logGroupName: pulumi.Input<string>;
  readonly tags: Record<string, string>;
}

export class MonitoringComponent extends pulumi.ComponentResource {
  public readonly alarmTopicArn: pulumi.Output<string>;

  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:monitoring:Monitoring", name, {}, opts);
    const parent = { parent: this };
    const { settings, tags } = args;

    if (settings.sesFromAddress) {
      new aws.iam.RolePolicy(
        `${name}-ses-send`,
        {
          // The identity component exports the role's ARN; its name is the ARN's last part.
          role: pulumi.output(args.schedulerRoleArn).apply((arn) => arn.split("/").pop() ?? arn),
          policy: JSON.stringify({
            Version: "2012-10-17",
            Statement: [
              {
                Sid: "SendNotificationEmail",
                Effect: "Allow",
                Action: ["ses:SendEmail"],
                Resource: "*",
                // Only as the configured sender.
                Condition: { StringEquals: { "ses:FromAddress": settings.sesFromAddress } },
              },
            ],
          }),
        },
        parent,
      );
    }

    const topic = new aws.sns.Topic(`${name}-alarms`, { tags }, parent);
    if (settings.alarmEmail) {
      new aws.sns.TopicSubscription(
        `${name}-alarms-email`,
        { topic: topic.arn, protocol: "email", endpoint: settings.alarmEmail },
        parent,
      );
    }
    const actions = { alarmActions: [topic.arn], okActions: [topic.arn] };

    new aws.cloudwatch.MetricAlarm(
      `${name}-dlq-depth`,
      {
        alarmDescription:
          "Shards in the dead-letter queue: they kept failing; the scheduler commits them as failed (see its log)",
        namespace: "AWS/SQS",
        metricName: "ApproximateNumberOfMessagesVisible",
        dimensions: { QueueName: args.dlqName },
        statistic: "Maximum",
        period: 300,
        evaluationPeriods: 1,
        threshold: 0,
        comparisonOperator: "GreaterThanThreshold",
        treatMissingData: "notBreaching",
        ...actions,
        tags,
      },
      parent,
    );

    new aws.cloudwatch.MetricAlarm(
      `${name}-scheduler-health`,
      {
        alarmDescription:
          "The scheduler API fails the load balancer's health check (GET /healthz) for 3 minutes",
        namespace: "AWS/ApplicationELB",
        metricName: "HealthyHostCount",
        dimensions: {
          LoadBalancer: args.loadBalancerArnSuffix,
          TargetGroup: args.targetGroupArnSuffix,
        },
        statistic: "Minimum",
        period: 60,
        evaluationPeriods: 3,
        threshold: 1,
        comparisonOperator: "LessThanThreshold",
        // No data means no healthy host reporting: as bad as none.
        treatMissingData: "breaching",
        ...actions,
        tags,
      },
      parent,
    );

    if (settings.alarmHourlyUsd !== undefined) {
      new aws.cloudwatch.LogMetricFilter(
        `${name}-spend`,
        {
          logGroupName: args.logGroupName,
          pattern: `{ $.msg = "${SPEND_LOG_MESSAGE}" }`,
          metricTransformation: {
            namespace: SPEND_METRIC.namespace,
            name: SPEND_METRIC.name,
            value: "$.hourlyUsd",
          },
        },
        parent,
      );
      new aws.cloudwatch.MetricAlarm(
        `${name}-spend-per-hour`,
        {
          alarmDescription: `The fleet's live instances cost over $${settings.alarmHourlyUsd} an hour`,
          namespace: SPEND_METRIC.namespace,
          metricName: SPEND_METRIC.name,
          statistic: "Maximum",
          period: 300,
          evaluationPeriods: 1,
          threshold: settings.alarmHourlyUsd,
          comparisonOperator: "GreaterThanThreshold",
          treatMissingData: "notBreaching",
          ...actions,
          tags,
        },
        parent,
      );
    }

    this.alarmTopicArn = topic.arn;
    this.registerOutputs({ alarmTopicArn: this.alarmTopicArn });
  }
}
