/**
 * The monitoring component under Pulumi's mocks: SES send granted only when configured (and
 * only as the configured sender), and the CloudWatch alarms on dead-letter depth, scheduler
 * health and spend per hour, with what they watch.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { SPEND_LOG_MESSAGE as SCHEDULER_SPEND_MESSAGE } from "../src/scheduler/metrics/spend-log.ts";
import {
  MonitoringComponent,
  type MonitoringSettings,
  readMonitoringSettings,
  SPEND_LOG_MESSAGE,
  SPEND_METRIC,
} from "./monitoring.ts";
import { ACCOUNT, type Recorded, recordingMocks, resolve } from "./testing.ts";

const recorded: Recorded[] = [];
const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/sf-scheduler-role-1234`;

function build(name: string, settings: MonitoringSettings) {
  return new MonitoringComponent(name, {
    settings,
    schedulerRoleArn: ROLE_ARN,
    dlqName: "sf-dlq",
    loadBalancerArnSuffix: "app/sf-alb/0123456789abcdef",
    targetGroupArnSuffix: "targetgroup/sf-api/0123456789abcdef",
    logGroupName: "/shardfleet/sf",
    tags: { project: "shardfleet" },
  });
}

const of = (component: string, type: string) =>
  recorded.filter((r) => r.type === type && r.name.startsWith(`${component}-`));

beforeAll(async () => {
  await pulumi.runtime.setMocks(recordingMocks(recorded), "shardfleet", "test", false);
  const full = build("full", {
    sesFromAddress: "shardfleet@example.com",
    alarmEmail: "oncall@example.com",
    alarmHourlyUsd: 25,
  });
  const bare = build("bare", {});
  await Promise.all([resolve(full.alarmTopicArn), resolve(bare.alarmTopicArn)]);
  // Let the role name (an apply) settle.
  await new Promise((r) => setTimeout(r, 50));
});

describe("monitoring (Pulumi mocks)", () => {
  it("grants ses:SendEmail to the scheduler's role, only as the configured sender", async () => {
    const [policy] = of("full", "aws:iam/rolePolicy:RolePolicy");
    expect(policy!.inputs.role).toBe("sf-scheduler-role-1234");
    expect(JSON.parse(policy!.inputs.policy).Statement).toEqual([
      {
        Sid: "SendNotificationEmail",
        Effect: "Allow",
        Action: ["ses:SendEmail"],
        Resource: "*",
        Condition: { StringEquals: { "ses:FromAddress": "shardfleet@example.com" } },
      },
    ]);
    expect(of("bare", "aws:iam/rolePolicy:RolePolicy")).toEqual([]);
  });

  it("alarms on dead-letter depth and scheduler health, to an SNS topic emailed on-call", () => {
    const alarms = of("full", "aws:cloudwatch/metricAlarm:MetricAlarm");
    const byName = new Map(alarms.map((a) => [a.name.slice("full-".length), a.inputs]));
    expect(byName.get("dlq-depth")).toMatchObject({
      namespace: "AWS/SQS",
      metricName: "ApproximateNumberOfMessagesVisible",
      dimensions: { QueueName: "sf-dlq" },
      threshold: 0,
      comparisonOperator: "GreaterThanThreshold",
    });
    expect(byName.get("scheduler-health")).toMatchObject({
      namespace: "AWS/ApplicationELB",
      metricName: "HealthyHostCount",
      dimensions: {
        LoadBalancer: "app/sf-alb/0123456789abcdef",
        TargetGroup: "targetgroup/sf-api/0123456789abcdef",
      },
      threshold: 1,
      comparisonOperator: "LessThanThreshold",
      treatMissingData: "breaching",
    });
    for (const alarm of alarms) {
      expect(alarm.inputs.alarmActions).toHaveLength(1);
      expect(alarm.inputs.tags).toEqual({ project: "shardfleet" });
    }
    const [subscription] = of("full", "aws:sns/topicSubscription:TopicSubscription");
    expect(subscription!.inputs).toMatchObject({
      protocol: "email",
      endpoint: "oncall@example.com",
    });
    expect(of("bare", "aws:sns/topicSubscription:TopicSubscription")).toEqual([]);
  });

  it("alarms on spend per hour from the scheduler's spend log line, when a limit is set", () => {
    expect(SPEND_LOG_MESSAGE).toBe(SCHEDULER_SPEND_MESSAGE);
    const [filter] = of("full", "aws:cloudwatch/logMetricFilter:LogMetricFilter");
    expect(filter!.inputs).toMatchObject({
      logGroupName: "/shardfleet/sf",
      pattern: '{ $.msg = "fleet spend" }',
      metricTransformation: { ...SPEND_METRIC, value: "$.hourlyUsd" },
    });
    const spend = of("full", "aws:cloudwatch/metricAlarm:MetricAlarm").find((a) =>
      a.name.endsWith("spend-per-hour"),
    );
    expect(spend!.inputs).toMatchObject({
      namespace: "Shardfleet",
      metricName: "FleetHourlyUsd",
      threshold: 25,
      comparisonOperator: "GreaterThanThreshold",
    });
    // No limit configured: the two health alarms only.
    expect(
      of("bare", "aws:cloudwatch/metricAlarm:MetricAlarm")
        .map((a) => a.name)
        .sort(),
    ).toEqual(["bare-dlq-depth", "bare-scheduler-health"]);
  });

  it("reads its settings from stack config, refusing a malformed address", () => {
    const config = (values: Record<string, string>) =>
      ({
        name: "shardfleet",
        get: (k: string) => values[k],
        getNumber: (k: string) => (values[k] === undefined ? undefined : Number(values[k])),
      }) as unknown as pulumi.Config;
    expect(readMonitoringSettings(config({ sesFromAddress: "", alarmHourlyUsd: "0" }))).toEqual({});
    expect(
      readMonitoringSettings(config({ sesFromAddress: "a@example.com", alarmHourlyUsd: "12" })),
    ).toEqual({ sesFromAddress: "a@example.com", alarmHourlyUsd: 12 });
    expect(() => readMonitoringSettings(config({ alarmEmail: "nobody" }))).toThrow(
      /shardfleet:alarmEmail must be an email address/,
    );
  });
});
