/**
 * The one place that knows fauxqs's internals: its in-memory store classes, which `buildApp`
 * accepts (`stores`) but the package's `exports` does not offer. They are loaded by file URL
 * next to the package's entry point, so this works only with the exact fauxqs version pinned in
 * package.json (1.9.2); the types below describe what that version has and what we use.
 */

/** An object as fauxqs 1.9.2's S3 store keeps it (mutable: the store hands out its own record). */
export interface FauxqsS3Object {
  key: string;
  body: Buffer;
  contentType: string;
  contentLength: number;
  etag: string;
  lastModified: Date;
  metadata: Record<string, string>;
}

/** The members of fauxqs 1.9.2's `S3Store` that the disk store overrides or calls. */
export interface FauxqsS3Store {
  createBucket(name: string): void;
  deleteBucket(name: string): void;
  hasBucket(name: string): boolean;
  putObject(
    bucket: string,
    key: string,
    body: Buffer,
    contentType?: string,
    metadata?: Record<string, string>,
  ): FauxqsS3Object;
  deleteObject(bucket: string, key: string): void;
  completeMultipartUpload(
    uploadId: string,
    parts: { partNumber: number; etag: string }[],
  ): FauxqsS3Object;
  /** Open multipart uploads by id (a plain class field in 1.9.2). */
  readonly multipartUploads: Map<string, { bucket: string; key: string }>;
}

export type FauxqsS3StoreClass = new () => FauxqsS3Store;

/** The three stores `buildApp({ stores })` needs; SQS and SNS are passed as fauxqs makes them. */
export interface FauxqsStoreClasses {
  S3Store: FauxqsS3StoreClass;
  SqsStore: new () => object;
  SnsStore: new () => object;
}

let loaded: Promise<FauxqsStoreClasses> | undefined;

/** Loads fauxqs's store classes once (rejects with a clear message if the layout changed). */
export function fauxqsStoreClasses(): Promise<FauxqsStoreClasses> {
  loaded ??= (async () => {
    const entry = import.meta.resolve("fauxqs");
    const load = async <T>(relative: string, name: string): Promise<T> => {
      const mod = (await import(new URL(relative, entry).href)) as Record<string, unknown>;
      if (typeof mod[name] !== "function") {
        throw new Error(
          `fauxqs has no ${name} at ${relative}: the local data folder needs fauxqs 1.9.2 (see package.json)`,
        );
      }
      return mod[name] as T;
    };
    const [S3Store, SqsStore, SnsStore] = await Promise.all([
      load<FauxqsS3StoreClass>("./s3/s3Store.js", "S3Store"),
      load<new () => object>("./sqs/sqsStore.js", "SqsStore"),
      load<new () => object>("./sns/snsStore.js", "SnsStore"),
    ]);
    return { S3Store, SqsStore, SnsStore };
  })();
  return loaded;
}
