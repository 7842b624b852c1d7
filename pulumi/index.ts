/**
 * The shardfleet stack: network, storage, queues, the spot-events queue, the log group, the
 * worker and scheduler identities, the worker launch template and the scheduler instance behind
 * its load balancer. Every export is a stack output; the scheduler and the worker image read
 * most of them as `SHARDFLEET_*` settings.
 */
import * as aws from "@pulumi/aws";
import { ApiTokenComponent } from "./api-token.ts";
import { ComputeComponent } from "./compute.ts";
import { readApiToken, readDeploymentSettings, readSettings, stackTags } from "./config.ts";
import { SpotEventsComponent } from "./events.ts";
import { SchedulerIdentityComponent, WorkerIdentityComponent } from "./iam.ts";
import { LogsComponent } from "./logs.ts";
import { MonitoringComponent, readMonitoringSettings } from "./monitoring.ts";
import { NetworkComponent } from "./network.ts";
import { QueuesComponent } from "./queues.ts";
import { SchedulerComponent } from "./scheduler.ts";
import { StorageComponent } from "./storage.ts";

const settings = readSettings();
const deployment = readDeploymentSettings();
const apiTokenValue = readApiToken();
const tags = stackTags();
const region = aws.getRegionOutput().region;
const accountId = aws.getCallerIdentityOutput().accountId;
const partition = aws.getPartitionOutput().partition;

const network = new NetworkComponent(settings.namePrefix, {
  ...(deployment.existingNetwork ? { existing: deployment.existingNetwork } : {}),
  tags,
});

const storage = new StorageComponent(settings.namePrefix, {
  tempObjectExpirationDays: settings.tempObjectExpirationDays,
  tags,
});

const queues = new QueuesComponent(settings.namePrefix, {
  visibilityTimeoutSeconds: settings.visibilityTimeoutSeconds,
  maxReceiveCount: settings.maxReceiveCount,
  tags,
});

const spotEvents = new SpotEventsComponent(settings.namePrefix, { tags });

const apiToken =
  apiTokenValue &&
  new ApiTokenComponent(`${settings.namePrefix}-api-token`, { token: apiTokenValue, tags });

const logs = new LogsComponent(settings.namePrefix, {
  retentionInDays: settings.logRetentionDays,
  tags,
});

const worker = new WorkerIdentityComponent(`${settings.namePrefix}-worker`, {
  bucketArn: storage.bucketArn,
  queueArns: [queues.workQueueArn, queues.stragglerQueueArn, queues.dlqArn],
  logGroupArn: logs.logGroupArn,
  tags,
});

/** What the worker's and the scheduler's boot scripts both write. */
const bootSettings = {
  region,
  bucket: storage.bucketName,
  workQueueUrl: queues.workQueueUrl,
  stragglerQueueUrl: queues.stragglerQueueUrl,
  dlqUrl: queues.dlqUrl,
  visibilityTimeoutSeconds: settings.visibilityTimeoutSeconds,
  logGroupName: logs.logGroupName,
};

const compute = new ComputeComponent(settings.namePrefix, {
  amiId: deployment.workerAmiId,
  instanceProfileName: worker.instanceProfileName,
  securityGroupId: network.workerSecurityGroupId,
  rootDeviceName: settings.workerRootDeviceName,
  settings: bootSettings,
  tags,
});

const schedulerIdentity = new SchedulerIdentityComponent(`${settings.namePrefix}-scheduler`, {
  bucketArn: storage.bucketArn,
  // src/scheduler/main.ts names the fleet after the bucket.
  fleetName: storage.bucketName,
  queueArns: [queues.workQueueArn, queues.stragglerQueueArn, queues.dlqArn],
  spotEventsQueueArn: spotEvents.queueArn,
  workerRoleArn: worker.roleArn,
  launchTemplateArn: compute.launchTemplateArn,
  amiId: deployment.workerAmiId,
  subnetIds: network.subnetIds,
  workerSecurityGroupArn: network.workerSecurityGroupArn,
  region,
  accountId,
  partition,
  logGroupArn: logs.logGroupArn,
  ...(apiToken ? { apiTokenParameterArn: apiToken.parameterArn } : {}),
  tags,
});

const scheduler = new SchedulerComponent(`${settings.namePrefix}-scheduler`, {
  amiId: deployment.workerAmiId,
  instanceType: settings.schedulerInstanceType,
  instanceProfileName: schedulerIdentity.instanceProfileName,
  rootDeviceName: settings.workerRootDeviceName,
  vpcId: network.vpcId,
  subnetIds: network.subnetIds,
  adminCidr: deployment.adminCidr,
  api: deployment.api,
  settings: {
    ...bootSettings,
    spotEventsQueueUrl: spotEvents.queueUrl,
    launchTemplateId: compute.launchTemplateId,
    instanceTypes: settings.instanceTypes,
    ...(apiToken ? { apiTokenParameterName: apiToken.parameterName } : {}),
  },
  tags,
});

const monitoring = new MonitoringComponent(`${settings.namePrefix}-monitoring`, {
  settings: readMonitoringSettings(),
  schedulerRoleArn: schedulerIdentity.roleArn,
  dlqName: queues.dlqArn.apply((arn) => arn.split(":").pop() ?? arn),
  loadBalancerArnSuffix: scheduler.loadBalancerArnSuffix,
  targetGroupArnSuffix: scheduler.targetGroupArnSuffix,
  logGroupName: logs.logGroupName,
  tags,
});
/** The SNS topic the CloudWatch alarms notify (subscribe to it, or set shardfleet:alarmEmail). */
export const alarmTopicArn = monitoring.alarmTopicArn;

/**
 * `SHARDFLEET_API_URL`: `https://` the API domain (else the load balancer's name, which the
 * certificate does not cover), `http://` with apiPlainHttp; from `shardfleet:adminCidr` only.
 */
export const apiEndpoint = scheduler.apiEndpoint;
/** The load balancer's DNS name, for a CNAME from the name the certificate covers. */
export const apiLoadBalancerDnsName = scheduler.apiLoadBalancerDnsName;
/** The scheduler's Auto Scaling group of one: `aws autoscaling start-instance-refresh` restarts it. */
export const schedulerAutoScalingGroupName = scheduler.autoScalingGroupName;
/** `SHARDFLEET_EC2_LAUNCH_TEMPLATE` */
export const launchTemplateId = compute.launchTemplateId;
/** `SHARDFLEET_EC2_SUBNETS` */
export const subnetIds = network.subnetIds;
export const vpcId = network.vpcId;
export const schedulerRoleArn = schedulerIdentity.roleArn;
/** `SHARDFLEET_BUCKET` */
export const bucketName = storage.bucketName;
/** `SHARDFLEET_WORK_QUEUE_URL` */
export const workQueueUrl = queues.workQueueUrl;
/** `SHARDFLEET_STRAGGLER_QUEUE_URL` */
export const stragglerQueueUrl = queues.stragglerQueueUrl;
/** `SHARDFLEET_DLQ_URL` */
export const dlqUrl = queues.dlqUrl;
/** `SHARDFLEET_SPOT_EVENTS_QUEUE_URL` (scheduler only) */
export const spotEventsQueueUrl = spotEvents.queueUrl;
export const dlqArn = queues.dlqArn;
/** The instance profile that worker launch templates name. */
export const workerInstanceProfileName = worker.instanceProfileName;
/** The scheduler needs `iam:PassRole` on this role to launch workers. */
export const workerRoleArn = worker.roleArn;
/**
 * Where an image built with log shipping sends the workers' and the scheduler's log lines, one
 * stream per instance id: `aws logs tail <logGroupName> --follow`.
 */
export const logGroupName = logs.logGroupName;
/**
 * The SSM parameter holding the API's bearer tokens (its name, not the value), with
 * `shardfleet:apiToken`; clients read the token with `pulumi config get shardfleet:apiToken`.
 */
export const apiTokenParameterName = apiToken?.parameterName;
/** The fleet manager's instance types, most preferred first. */
export const instanceTypes = settings.instanceTypes;
