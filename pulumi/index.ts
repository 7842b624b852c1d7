/**
 * The shardfleet stack: storage, queues and the worker identity. Every export is a stack
 * output; the scheduler and the worker image read them as `SHARDFLEET_*` settings.
 */
import { readSettings, stackTags } from "./config.ts";
import { WorkerIdentityComponent } from "./iam.ts";
import { QueuesComponent } from "./queues.ts";
import { StorageComponent } from "./storage.ts";

const settings = readSettings();
const tags = stackTags();

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
