/**
 * The bucket: the source of truth for every operation. Its records (manifest, fleet record,
 * commit markers, attempts, output workbook, cost report) live under `operations/` and stay;
 * its temporary objects (uploaded workbook, shard slices, checkpoints, result chunks) live
 * under `scratch/` and expire.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { SCRATCH_PREFIX } from "../src/shared/keys.ts";

export interface StorageArgs {
  /**
   * Days after which objects under `scratch/` expire. S3 counts from each object's creation,
   * so this must exceed the longest operation or a running one loses its input and chunks.
   */
  readonly tempObjectExpirationDays: number;
  /** Tags for every taggable child. */
  readonly tags: Record<string, string>;
}

export class StorageComponent extends pulumi.ComponentResource {
  /** The bucket's name, for `SHARDFLEET_BUCKET`. */
  public readonly bucketName: pulumi.Output<string>;
  public readonly bucketArn: pulumi.Output<string>;

  constructor(name: string, args: StorageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardfleet:storage:Storage", name, {}, opts);
    const parent = { parent: this };

    const bucket = new aws.s3.Bucket(`${name}-bucket`, { tags: args.tags }, parent);

    const publicAccessBlock = new aws.s3.BucketPublicAccessBlock(
      `${name}-public-access-block`,
      {
        bucket: bucket.id,
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      },
      parent,
    );

    new aws.s3.BucketServerSideEncryptionConfiguration(
      `${name}-encryption`,
      {
        bucket: bucket.id,
        rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }],
      },
      parent,
    );

    // Shard commits are first-writer-wins puts and result rows are de-duplicated by row index,
    // so old versions have no use; they would only outlive the expiration rule below.
    new aws.s3.BucketVersioning(
      `${name}-versioning`,
      { bucket: bucket.id, versioningConfiguration: { status: "Disabled" } },
      parent,
    );

    new aws.s3.BucketLifecycleConfiguration(
      `${name}-lifecycle`,
      {
        bucket: bucket.id,
        rules: [
          {
            // Only the temporary objects: results and cost reports under operations/ stay until
            // deleted by hand.
            id: "expire-scratch",
            status: "Enabled",
            filter: { prefix: SCRATCH_PREFIX },
            expiration: { days: args.tempObjectExpirationDays },
          },
          {
            // Whole bucket: a worker reclaimed mid-upload leaves parts that are billed but
            // never listed as objects, so the rule above would not catch them.
            id: "abort-incomplete-multipart-uploads",
            status: "Enabled",
            filter: {},
            abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
          },
        ],
      },
      parent,
    );

    new aws.s3.BucketPolicy(
      `${name}-policy`,
      {
        bucket: bucket.id,
        policy: pulumi.jsonStringify({
          Version: "2012-10-17",
          Statement: [
            {
              Sid: "DenyInsecureTransport",
              Effect: "Deny",
              Principal: "*",
              Action: "s3:*",
              Resource: [bucket.arn, pulumi.interpolate`${bucket.arn}/*`],
              Condition: { Bool: { "aws:SecureTransport": "false" } },
            },
          ],
        }),
      },
      // S3 rejects a policy and a public access block changed at the same time.
      { parent: this, dependsOn: [publicAccessBlock] },
    );

    this.bucketName = bucket.bucket;
    this.bucketArn = bucket.arn;
    this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn });
  }
}
