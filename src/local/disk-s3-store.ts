/**
 * The local server's objects on disk: fauxqs's in-memory S3 store, with every object write and
 * delete also made to a file (write-through, before the request is answered), and every file
 * loaded back when the server starts. A data folder is used by one server at a time (a lock
 * file naming its process).
 *
 * Layout of `<dataDir>` (format 1):
 * - `lock`: the pid of the process serving from it;
 * - `s3/bucket-<name>/`: one folder per bucket (name URI-encoded);
 * - `s3/bucket-<name>/<hh>/<sha256 of key>.obj`: one file per object, a header line
 *   `SFOBJ1 {json: key, content type, ETag, last modified, metadata}` then the body.
 *
 * Each file is written to a temporary name and renamed over the old one, so a process killed
 * mid-write leaves the previous version or the new one, never half of one (temporary files are
 * removed at the next start). Files are not fsynced: a killed stack or a clean reboot keeps
 * every answered write; a power cut may lose the last few seconds.
 *
 * What is not kept: SQS (queues are re-created at start, messages are gone) and multipart
 * uploads still open when the server stopped.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "../shared/errors.ts";
import type { FauxqsS3Object, FauxqsS3Store, FauxqsS3StoreClass } from "./fauxqs-internals.ts";

const MAGIC = "SFOBJ1 ";
const BUCKET_PREFIX = "bucket-";

/** The header line of an object file. */
const objectHeaderSchema = z.object({
  key: z.string(),
  contentType: z.string(),
  etag: z.string(),
  lastModified: z.iso.datetime(),
  metadata: z.record(z.string(), z.string()),
});
type ObjectHeader = z.infer<typeof objectHeaderSchema>;

/** What a start found in the data folder. */
export interface DiskLoadReport {
  buckets: number;
  objects: number;
  /** Object files that could not be read (named, then left where they are). */
  unreadable: string[];
}

/** The files of one data folder's objects. Synchronous: fauxqs's store is. */
class ObjectFiles {
  readonly #root: string;
  readonly #madeDirs = new Set<string>();

  constructor(dataDir: string) {
    this.#root = path.join(dataDir, "s3");
  }

  #bucketDir(bucket: string): string {
    return path.join(this.#root, `${BUCKET_PREFIX}${encodeURIComponent(bucket)}`);
  }

  #objectFile(bucket: string, key: string): { dir: string; file: string } {
    const hash = createHash("sha256").update(key, "utf8").digest("hex");
    const dir = path.join(this.#bucketDir(bucket), hash.slice(0, 2));
    return { dir, file: path.join(dir, `${hash}.obj`) };
  }

  #mkdir(dir: string): void {
    if (this.#madeDirs.has(dir)) return;
    mkdirSync(dir, { recursive: true });
    this.#madeDirs.add(dir);
  }

  writeBucket(bucket: string): void {
    this.#mkdir(this.#bucketDir(bucket));
  }

  removeBucket(bucket: string): void {
    const dir = this.#bucketDir(bucket);
    rmSync(dir, { recursive: true, force: true });
    for (const made of this.#madeDirs) if (made.startsWith(dir)) this.#madeDirs.delete(made);
  }

  write(bucket: string, object: FauxqsS3Object): void {
    const { dir, file } = this.#objectFile(bucket, object.key);
    this.#mkdir(dir);
    const header: ObjectHeader = {
      key: object.key,
      contentType: object.contentType,
      etag: object.etag,
      lastModified: object.lastModified.toISOString(),
      metadata: object.metadata,
    };
    const temporary = `${file}.${process.pid}.tmp`;
    const fd = openSync(temporary, "w");
    try {
      writeSync(fd, `${MAGIC}${JSON.stringify(header)}\n`);
      let written = 0;
      while (written < object.body.length) {
        written += writeSync(fd, object.body, written, object.body.length - written);
      }
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
  }

  remove(bucket: string, key: string): void {
    rmSync(this.#objectFile(bucket, key).file, { force: true });
  }

  /** Every bucket and object on disk; leftover temporary files are removed. */
  load(): {
    buckets: { name: string; objects: { header: ObjectHeader; body: Buffer }[] }[];
    unreadable: string[];
  } {
    const unreadable: string[] = [];
    const buckets: { name: string; objects: { header: ObjectHeader; body: Buffer }[] }[] = [];
    mkdirSync(this.#root, { recursive: true });
    for (const bucketEntry of readdirSync(this.#root, { withFileTypes: true })) {
      if (!bucketEntry.isDirectory() || !bucketEntry.name.startsWith(BUCKET_PREFIX)) continue;
      const name = decodeURIComponent(bucketEntry.name.slice(BUCKET_PREFIX.length));
      const bucketDir = path.join(this.#root, bucketEntry.name);
      const objects: { header: ObjectHeader; body: Buffer }[] = [];
      for (const fanout of readdirSync(bucketDir, { withFileTypes: true })) {
        if (!fanout.isDirectory()) continue;
        const fanoutDir = path.join(bucketDir, fanout.name);
        for (const fileName of readdirSync(fanoutDir)) {
          const file = path.join(fanoutDir, fileName);
          if (fileName.endsWith(".tmp")) {
            rmSync(file, { force: true });
            continue;
          }
          if (!fileName.endsWith(".obj")) continue;
          const parsed = parseObjectFile(readFileSync(file));
          if (parsed) objects.push(parsed);
          else unreadable.push(file);
        }
      }
      buckets.push({ name, objects });
    }
    return { buckets, unreadable };
  }
}

function parseObjectFile(content: Buffer): { header: ObjectHeader; body: Buffer } | undefined {
  const newline = content.indexOf(0x0a);
  if (newline < 0 || content.subarray(0, MAGIC.length).toString("utf8") !== MAGIC) {
    return undefined;
  }
  try {
    const header = objectHeaderSchema.safeParse(
      JSON.parse(content.subarray(MAGIC.length, newline).toString("utf8")),
    );
    return header.success
      ? { header: header.data, body: content.subarray(newline + 1) }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * fauxqs's S3 store with write-through to `files`. Every method fauxqs's routes call to change
 * an object or bucket writes the file after the store accepted the change, inside the same
 * synchronous call, so the per-key write lock of the hooks orders the files as it orders the
 * store.
 */
function diskBackedStore(Base: FauxqsS3StoreClass, files: ObjectFiles) {
  return class DiskBackedS3Store extends Base {
    override createBucket(name: string): void {
      super.createBucket(name);
      files.writeBucket(name);
    }

    override deleteBucket(name: string): void {
      super.deleteBucket(name);
      files.removeBucket(name);
    }

    override putObject(
      bucket: string,
      key: string,
      body: Buffer,
      contentType?: string,
      metadata?: Record<string, string>,
    ): FauxqsS3Object {
      const object = super.putObject(bucket, key, body, contentType, metadata);
      files.write(bucket, object);
      return object;
    }

    override completeMultipartUpload(
      uploadId: string,
      parts: { partNumber: number; etag: string }[],
    ): FauxqsS3Object {
      const bucket = this.multipartUploads.get(uploadId)?.bucket;
      const object = super.completeMultipartUpload(uploadId, parts);
      if (bucket !== undefined) files.write(bucket, object);
      return object;
    }

    override deleteObject(bucket: string, key: string): void {
      super.deleteObject(bucket, key);
      files.remove(bucket, key);
    }

    /** Puts a loaded bucket back, unwritten. */
    restoreBucket(name: string): void {
      super.createBucket(name);
    }

    /** Puts a loaded object back as it was (ETag and last-modified time included), unwritten. */
    restore(bucket: string, header: ObjectHeader, body: Buffer): void {
      const object = super.putObject(bucket, header.key, body, header.contentType, header.metadata);
      object.etag = header.etag;
      object.lastModified = new Date(header.lastModified);
    }
  };
}

/** A data folder's lock: the file `lock` holding the serving process's pid. */
function acquireLock(dataDir: string): () => void {
  const file = path.join(dataDir, "lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: "wx" });
      return () => {
        try {
          if (readFileSync(file, "utf8").trim() === String(process.pid)) rmSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
    if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) {
      throw new ConfigError(
        `the local data folder ${dataDir} is in use by process ${holder} (another shardfleet local?): stop it, or pick another --data-dir`,
        { details: { dataDir, pid: holder } },
      );
    }
    // A lock left by a process that died (a SIGKILLed stack): take the folder over.
    rmSync(file, { force: true });
  }
  throw new ConfigError(`cannot lock the local data folder ${dataDir}`, { details: { dataDir } });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface DiskS3Store {
  /** The store to hand fauxqs's `buildApp({ stores })`. */
  readonly store: FauxqsS3Store;
  readonly loaded: DiskLoadReport;
  /** Releases the data folder's lock (the files stay). */
  release(): void;
}

/**
 * Opens a data folder: takes its lock (a ConfigError naming the holder if a live process has
 * it), creates it if missing and loads every object into a new disk-backed store.
 */
export function openDiskS3Store(
  deps: { S3Store: FauxqsS3StoreClass },
  dataDir: string,
): DiskS3Store {
  mkdirSync(dataDir, { recursive: true });
  const release = acquireLock(dataDir);
  try {
    const files = new ObjectFiles(dataDir);
    const Store = diskBackedStore(deps.S3Store, files);
    const store = new Store();
    const { buckets, unreadable } = files.load();
    let objects = 0;
    for (const bucket of buckets) {
      store.restoreBucket(bucket.name);
      for (const { header, body } of bucket.objects) {
        store.restore(bucket.name, header, body);
        objects++;
      }
    }
    return { store, loaded: { buckets: buckets.length, objects, unreadable }, release };
  } catch (err) {
    release();
    throw err;
  }
}
