/**
 * A GET body that survives a dropped connection. The SDK retries a request that fails before
 * its body starts, never an error inside the body (a connection cut mid-response): without this,
 * one dropped connection during a merge failed the whole operation. On such an error the body is
 * re-requested from the first byte not yet delivered (`Range: bytes=N-`), checked to be the same
 * object (ETag), and the reader never sees the seam.
 */
import { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";

/** One opened GET: its body and what identifies the object's version. */
export interface OpenedBody {
  body: Readable;
  etag?: string;
  /** Bytes in this response (the whole object when `from` was 0). */
  length?: number;
}

export interface ResumableReadOptions {
  /** Re-requests after a body error, in a row (delivering bytes resets the count). @default 5 */
  retries?: number;
  /** First backoff; doubles with each failure in a row, with full jitter. @default 100 */
  backoffMs?: number;
  signal?: AbortSignal;
}

/** The object changed between two requests of one read: restarting from byte 0 is the caller's. */
export class ObjectChangedError extends Error {
  constructor(etagBefore: string, etagAfter: string | undefined) {
    super(`object changed while being read (ETag ${etagBefore} → ${etagAfter ?? "none"})`);
    this.name = "ObjectChangedError";
  }
}

/**
 * A byte stream over `first` that, when the body errors, calls `open(offset)` for the rest and
 * continues. Errors after `retries` failures in a row, when aborted, or when the object changed.
 */
export function resumableBody(
  first: OpenedBody,
  open: (offset: number, signal?: AbortSignal) => Promise<OpenedBody>,
  options: ResumableReadOptions = {},
): Readable {
  const retries = options.retries ?? 5;
  const backoffMs = options.backoffMs ?? 100;
  const { signal } = options;
  const total = first.length;

  async function* bytes(): AsyncGenerator<Buffer> {
    let current: Readable = first.body;
    let offset = 0;
    let failures = 0;
    for (;;) {
      try {
        for await (const chunk of current) {
          const buf = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
          offset += buf.length;
          failures = 0;
          yield buf;
        }
        return;
      } catch (err) {
        current.destroy();
        if (signal?.aborted || err instanceof ObjectChangedError) throw err;
        // Everything was delivered and only the close failed: nothing is missing.
        if (total !== undefined && offset >= total) return;
        if (++failures > retries) throw err;
        await delay(Math.random() * backoffMs * 2 ** (failures - 1), undefined, { signal });
        try {
          const next = await open(offset, signal);
          if (first.etag && next.etag && next.etag !== first.etag) {
            next.body.destroy();
            throw new ObjectChangedError(first.etag, next.etag);
          }
          current = next.body;
        } catch (openErr) {
          if (openErr instanceof ObjectChangedError || signal?.aborted) throw openErr;
          // Reopening failed too (the SDK already retried it): count it and try again.
          current = Readable.from(failing(openErr));
        }
      }
    }
  }
  return Readable.from(bytes(), { objectMode: false });
}

// biome-ignore lint/correctness/useYield: a body that fails at once, so the loop above counts it.
async function* failing(err: unknown): AsyncGenerator<Buffer> {
  throw err;
}
