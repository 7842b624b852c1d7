/**
 * The shardfleet stack: network, storage, queues, the worker and scheduler identities, the
 * worker launch template and the scheduler instance. Every export is a stack output; the
 * scheduler and the worker image read them as `SHARDFLEET_*` settings.
 */
import * as aws from "@pulumi/aws";
import { ComputeComponent } from "./compute.ts";
import { readDeploymentSettings, readSettings, stackTags } from "./config.ts";
import { SchedulerIdentityComponent, WorkerIdentityComponent } from "./iam.ts";
import { NetworkComponent } from "./network.ts";
import { QueuesComponent } from "./queues.ts";
import { SchedulerComponent } from "./scheduler.ts";
import { StorageComponent } from "./storage.ts";

const settings = readSettings();
const deployment = readDeploymentSettings();
const tags = stackTags();
const region = aws.getRegionOutput().region;
const accountId = aws.getCallerIdentityOutput().accountId;

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

const worker = new WorkerIdentityComponent(`${settings.namePrefix}-worker`, {
  bucketArn: storage.bucketArn,
  queueArns: [queues.workQueueArn, queues.stragglerQueueArn, queues.dlqArn],
  tags,
});

const compute = new ComputeComponent(settings.namePrefix, {
  amiId: deployment.workerAmiId,
  instanceProfileName: worker.instanceProfileName,
  securityGroupId: network.workerSecurityGroupId,
  settings: {
    region,
    bucket: storage.bucketName,
    workQueueUrl: queues.workQueueUrl,
    stragglerQueueUrl: queues.stragglerQueueUrl,
    dlqUrl: queues.dlqUrl,
    visibilityTimeoutSeconds: settings.visibilityTimeoutSeconds,
  },
  tags,
});

const schedulerIdentity = new SchedulerIdentityComponent(`${settings.namePrefix}-scheduler`, {
  bucketArn: storage.bucketArn,
  // src/scheduler/main.ts names the fleet after the bucket.
  fleetName: storage.bucketName,
  queueArns: [queues.workQueueArn, queues.stragglerQueueArn, queues.dlqArn],
  workerRoleArn: worker.roleArn,
  launchTemplateArn: compute.launchTemplateArn,
  amiId: deployment.workerAmiId,
  subnetIds: network.subnetIds,
  workerSecurityGroupArn: network.workerSecurityGroupArn,
  region,
  accountId,
  tags,
});

const scheduler = new SchedulerComponent(`${settings.namePrefix}-scheduler`, {
  amiId: deployment.workerAmiId,
  instanceType: settings.schedulerInstanceType,
  instanceProfileName: schedulerIdentity.instanceProfileName,
  vpcId: network.vpcId,
  subnetIds: network.subnetIds,
  adminCidr: deployment.adminCidr,
  settings: {
    region,
    bucket: storage.bucketName,
    workQueueUrl: queues.workQueueUrl,
    stragglerQueueUrl: queues.stragglerQueueUrl,
    dlqUrl: queues.dlqUrl,
    launchTemplateId: compute.launchTemplateId,
    instanceTypes: settings.instanceTypes,
    visibilityTimeoutSeconds: settings.visibilityTimeoutSeconds,
  },
  tags,
});

/** `shardfleet … --api`: plain HTTP, reachable from `shardfleet:adminCidr` only. */
export const apiEndpoint = scheduler.apiEndpoint;
export const schedulerInstanceId = scheduler.instanceId;
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
export const dlqArn = queues.dlqArn;
/** The instance profile that worker launch templates name. */
export const workerInstanceProfileName = worker.instanceProfileName;
/** The scheduler needs `iam:PassRole` on this role to launch workers. */
export const workerRoleArn = worker.roleArn;
/** The fleet manager's instance types, most preferred first. */
export const instanceTypes = settings.instanceTypes;
