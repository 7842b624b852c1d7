/**
 * A thin, typed view of one S3 bucket. JSON objects are schema-checked on the way in and out;
 * large bodies go through multipart upload (@aws-sdk/lib-storage), so no single PUT exceeds a
 * server's body limit and nothing big is held in memory.
 */
import type { Readable } from "node:stream";
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { z } from "zod";
import { classifyAwsError } from "./aws-errors.ts";
import { type OpenedBody, resumableBody } from "./resumable-read.ts";

export interface ObjectStoreDeps {
  s3: S3Client;
}

export interface ObjectStoreOptions {
  bucket: string;
  /** Multipart part size for `upload`. @default 8 MiB */
  partSize?: number;
}

export function isNotFound(err: unknown): boolean {
  return classifyAwsError(err) === "not-found";
}

/**
 * S3 may answer a conditional write that overlaps another with 409 ConditionalRequestConflict
 * instead of 412; retrying it yields the definitive answer.
 */
export function isConditionalConflict(err: unknown): boolean {
  return classifyAwsError(err) === "conflict";
}

export function isPreconditionFailed(err: unknown): boolean {
  return classifyAwsError(err) === "precondition-failed";
}

/** The outcome of `putJsonIfMatch`. */
export type ConditionalPut =
  | { outcome: "written"; etag: string }
  /** `conflict`: S3 answered 409 (a write overlapped), not 412: nothing may have changed. */
  | { outcome: "changed"; conflict?: true }
  | { outcome: "gone" };

export class ObjectStore {
  readonly bucket: string;
  readonly #s3: S3Client;
  readonly #partSize: number;

  constructor(deps: ObjectStoreDeps, options: ObjectStoreOptions) {
    this.#s3 = deps.s3;
    this.bucket = options.bucket;
    this.#partSize = options.partSize ?? 8 * 1024 * 1024;
  }

  /**
   * The object's body as a stream, or undefined when it does not exist. A connection dropped
   * mid-body is resumed from the next byte (./resumable-read.ts), so readers never see it.
   */
  async getStream(key: string, signal?: AbortSignal): Promise<Readable | undefined> {
    let first: OpenedBody;
    try {
      first = await this.#open(key, 0, undefined, signal);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    return resumableBody(first, (offset, s) => this.#open(key, offset, undefined, s), { signal });
  }

  /**
   * Bytes [start, end) of the object (a ranged GET), for readers that seek, such as a zip's
   * central directory. Undefined when the object does not exist.
   */
  async getRange(
    key: string,
    start: number,
    end: number,
    signal?: AbortSignal,
  ): Promise<Readable | undefined> {
    let first: OpenedBody;
    try {
      first = await this.#open(key, start, end, signal);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    return resumableBody(first, (offset, s) => this.#open(key, start + offset, end, s), {
      signal,
    });
  }

  /** The object's size in bytes (HEAD), or undefined when it does not exist. */
  async size(key: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      const out = await this.#s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      return out.ContentLength;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** The object's user metadata (HEAD; keys lower-cased by S3), or undefined when it does not exist. */
  async metadata(key: string, signal?: AbortSignal): Promise<Record<string, string> | undefined> {
    try {
      const out = await this.#s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      return out.Metadata ?? {};
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** The object's body as text, or undefined when it does not exist. */
  async getText(key: string, signal?: AbortSignal): Promise<string | undefined> {
    const stream = await this.getStream(key, signal);
    if (!stream) return undefined;
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    return Buffer.concat(parts).toString("utf-8");
  }

  /**
   * After a 412 on a conditional write: the object's ETag when it holds exactly `body`, i.e. the
   * write landed on an earlier try whose answer was lost (a connection dropped after S3 acted,
   * which the SDK retries, and the retry finds its own write), else undefined (someone else's).
   * Our bodies carry a unique holder, attempt or time, so another writer's are never equal.
   */
  async #ownWrite(key: string, body: string, signal?: AbortSignal): Promise<string | undefined> {
    const read = await this.#readVersioned(key, signal);
    if (!read) return undefined;
    return read.text === body ? (read.etag ?? "") : undefined;
  }

  /**
   * A small object's text and the ETag of the very response it came in (one plain GET, never
   * stitched from two: a resumed read could join two versions), or undefined when it does not
   * exist. What a conditional write compares against and builds on.
   */
  async #readVersioned(
    key: string,
    signal?: AbortSignal,
  ): Promise<{ text: string; etag?: string } | undefined> {
    let out: OpenedBody;
    try {
      out = await this.#open(key, 0, undefined, signal);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const parts: Buffer[] = [];
    for await (const chunk of out.body) parts.push(chunk as Buffer);
    return {
      text: Buffer.concat(parts).toString("utf-8"),
      ...(out.etag ? { etag: out.etag } : {}),
    };
  }

  /** GET of bytes [start, end) (to the end when `end` is undefined; the whole object from 0). */
  async #open(
    key: string,
    start: number,
    end: number | undefined,
    signal?: AbortSignal,
  ): Promise<OpenedBody> {
    const range =
      end !== undefined ? `bytes=${start}-${end - 1}` : start > 0 ? `bytes=${start}-` : undefined;
    const out = await this.#s3.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: range } : {}) }),
      { abortSignal: signal },
    );
    return {
      body: out.Body as Readable,
      ...(out.ETag ? { etag: out.ETag } : {}),
      ...(out.ContentLength !== undefined ? { length: out.ContentLength } : {}),
    };
  }

  /** The object's bytes, or undefined when it does not exist (small objects only). */
  async getBytes(key: string, signal?: AbortSignal): Promise<Buffer | undefined> {
    const stream = await this.getStream(key, signal);
    if (!stream) return undefined;
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    return Buffer.concat(parts);
  }

  /** Writes a small binary object (under the single-PUT limit) in one PUT. */
  async putBytes(key: string, body: Uint8Array, contentType: string, signal?: AbortSignal) {
    await this.#s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }),
      { abortSignal: signal },
    );
  }

  /** Parses a JSON object with `schema`; undefined when it does not exist. */
  async getJson<S extends z.ZodType>(
    key: string,
    schema: S,
    signal?: AbortSignal,
  ): Promise<z.infer<S> | undefined> {
    const text = await this.getText(key, signal);
    if (text === undefined) return undefined;
    return schema.parse(JSON.parse(text));
  }

  /** Writes a small text object (under the single-PUT limit). */
  async putText(key: string, body: string, contentType = "text/plain", signal?: AbortSignal) {
    await this.#s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType }),
      { abortSignal: signal },
    );
  }

  /** Validates then writes a JSON object. */
  async putJson<S extends z.ZodType>(
    key: string,
    schema: S,
    value: z.input<S>,
    signal?: AbortSignal,
  ): Promise<void> {
    const body = JSON.stringify(schema.parse(value));
    await this.putText(key, body, "application/json", signal);
  }

  /**
   * Writes a JSON object only if the key does not exist yet (`If-None-Match: *`).
   * Returns true when this call created it (also when its answer was lost and the SDK's retry
   * found its own write), false when someone else already had.
   */
  async putJsonIfAbsent<S extends z.ZodType>(
    key: string,
    schema: S,
    value: z.input<S>,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const body = JSON.stringify(schema.parse(value));
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#s3.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Body: body,
            ContentType: "application/json",
            IfNoneMatch: "*",
          }),
          { abortSignal: signal },
        );
        return true;
      } catch (err) {
        if (isPreconditionFailed(err))
          return (await this.#ownWrite(key, body, signal)) !== undefined;
        if (!isConditionalConflict(err) || attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  /**
   * A small JSON object parsed with `schema`, with the ETag it was read at (for a later
   * `putJsonIfMatch`); undefined when it does not exist.
   */
  async getJsonVersioned<S extends z.ZodType>(
    key: string,
    schema: S,
    signal?: AbortSignal,
  ): Promise<{ value: z.infer<S>; etag: string } | undefined> {
    const read = await this.#readVersioned(key, signal);
    if (!read) return undefined;
    if (!read.etag)
      throw new Error(`S3 sent no ETag for ${key}: it cannot be written conditionally`);
    return { value: schema.parse(JSON.parse(read.text)), etag: read.etag };
  }

  /**
   * Validates then writes a JSON object only if it is still the version read (`If-Match` on
   * `etag`): `written` with the new ETag (also when its answer was lost and the SDK's retry
   * found its own write); `changed` when another write came first (412), or
   * overlapped this one (409: read again to learn which won); `gone` when it no longer exists.
   */
  async putJsonIfMatch<S extends z.ZodType>(
    key: string,
    schema: S,
    value: z.input<S>,
    etag: string,
    signal?: AbortSignal,
  ): Promise<ConditionalPut> {
    const body = JSON.stringify(schema.parse(value));
    try {
      const out = await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: "application/json",
          IfMatch: etag,
        }),
        { abortSignal: signal },
      );
      return { outcome: "written", etag: out.ETag ?? "" };
    } catch (err) {
      if (isPreconditionFailed(err)) {
        const own = await this.#ownWrite(key, body, signal);
        return own === undefined ? { outcome: "changed" } : { outcome: "written", etag: own };
      }
      if (isConditionalConflict(err)) return { outcome: "changed", conflict: true };
      if (isNotFound(err)) return { outcome: "gone" };
      throw err;
    }
  }

  /**
   * Writes a body of any size. A stream goes through multipart upload (at most `queueSize` parts
   * of `partSize` bytes buffered); a buffer no larger than a part is sent as one PUT, without
   * the multipart machinery's copies and calls.
   */
  async upload(
    key: string,
    body: Readable | Buffer,
    options: {
      contentType?: string;
      signal?: AbortSignal;
      /** Parts uploaded at once, each a buffer of `partSize` bytes. @default 4 */
      queueSize?: number;
      /** User metadata (`x-amz-meta-*`; US-ASCII values), read back with `metadata`. */
      metadata?: Record<string, string>;
    } = {},
  ): Promise<void> {
    if (Buffer.isBuffer(body) && body.length <= this.#partSize) {
      await this.#s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: options.contentType,
          Metadata: options.metadata,
        }),
        { abortSignal: options.signal },
      );
      return;
    }
    const upload = new Upload({
      client: this.#s3,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: options.contentType,
        Metadata: options.metadata,
      },
      partSize: this.#partSize,
      queueSize: options.queueSize ?? 4,
      leavePartsOnError: false,
    });
    const onAbort = () => void upload.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await upload.done();
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  async exists(key: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.#s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Every key under `prefix`, across pages, in lexicographic order. */
  async list(prefix: string, signal?: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#s3.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
        { abortSignal: signal },
      );
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** Every key under `prefix` with its last-modified time (ms since the epoch), across pages. */
  async listModified(
    prefix: string,
    signal?: AbortSignal,
  ): Promise<Array<{ key: string; modifiedAt: number }>> {
    const out: Array<{ key: string; modifiedAt: number }> = [];
    let token: string | undefined;
    do {
      const page = await this.#s3.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
        { abortSignal: signal },
      );
      for (const o of page.Contents ?? []) {
        if (o.Key && o.LastModified) out.push({ key: o.Key, modifiedAt: o.LastModified.getTime() });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** The "folders" directly under `prefix` (ListObjectsV2 with a delimiter). */
  async listPrefixes(prefix: string, signal?: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#s3.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          Delimiter: "/",
          ContinuationToken: token,
        }),
        { abortSignal: signal },
      );
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) out.push(p.Prefix);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** Deletes every object under `prefix` (1,000 keys a call). */
  async deletePrefix(prefix: string, signal?: AbortSignal): Promise<void> {
    const all = await this.list(prefix, signal);
    for (let i = 0; i < all.length; i += 1000) {
      const batch = all.slice(i, i + 1000);
      await this.#s3.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }),
        { abortSignal: signal },
      );
    }
  }
}
