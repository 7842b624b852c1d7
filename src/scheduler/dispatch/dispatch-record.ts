/**
 * The dispatch record's one owner (`keys.dispatch(op)`, ../../shared/schemas/dispatch.ts): how
 * many of an operation's shards are on the work queue. Created (cursor 0) with
 * `If-None-Match: *` before the operation's split queues anything; advanced with `If-Match` on
 * the ETag last read or written; on a 412 it is read again and the larger cursor kept, so two
 * schedulers (a lease takeover mid-dispatch) never move it back. ETags are cached: a pass costs
 * no read while this process is the only writer.
 */
import type { Clock } from "../../shared/clock.ts";
import { keys } from "../../shared/keys.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { type DispatchRecord, dispatchRecordSchema } from "../../shared/schemas/dispatch.ts";

/** How often a contended advance is read and tried again before it gives up for this pass. */
const ROUNDS = 8;

export class DispatchRecords {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  /** The last version read or written, by operation. */
  readonly #known = new Map<string, { record: DispatchRecord; etag: string }>();

  constructor(deps: { store: ObjectStore; clock: Clock }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
  }

  /**
   * Creates the record with nothing dispatched, unless it exists (a split run again). Called
   * before a split: an operation split since this release always has one.
   */
  async create(operationId: string, signal?: AbortSignal): Promise<void> {
    await this.#store.putJsonIfAbsent(
      keys.dispatch(operationId),
      dispatchRecordSchema,
      this.#fresh(operationId, 0),
      signal,
    );
  }

  /** How many shards were dispatched, or undefined when the operation has no record. */
  async dispatched(operationId: string, signal?: AbortSignal): Promise<number | undefined> {
    const known = this.#known.get(operationId) ?? (await this.#read(operationId, signal));
    return known?.record.dispatched;
  }

  /**
   * Records that shards `[0, to)` were dispatched. Never moves the cursor back: if another
   * writer got further, its cursor stands. Returns the cursor now recorded; throws when the
   * record kept changing under it for every round (the next pass tries again).
   */
  async advance(operationId: string, to: number, signal?: AbortSignal): Promise<number> {
    for (let round = 0; round < ROUNDS; round++) {
      const known = this.#known.get(operationId) ?? (await this.#read(operationId, signal));
      const key = keys.dispatch(operationId);
      if (!known) {
        // An operation from before dispatch records (or one whose record was deleted).
        const value = this.#fresh(operationId, to);
        if (await this.#store.putJsonIfAbsent(key, dispatchRecordSchema, value, signal)) {
          this.#known.delete(operationId);
          return to;
        }
        continue;
      }
      if (known.record.dispatched >= to) return known.record.dispatched;
      const value = this.#fresh(operationId, to);
      const put = await this.#store.putJsonIfMatch(
        key,
        dispatchRecordSchema,
        value,
        known.etag,
        signal,
      );
      if (put.outcome === "written" && put.etag) {
        this.#known.set(operationId, { record: value, etag: put.etag });
        return to;
      }
      // Changed (or a write with no ETag back): learn the current version and decide again.
      this.#known.delete(operationId);
    }
    throw new Error(`dispatch record of ${operationId} kept changing (${ROUNDS} rounds)`);
  }

  /** Drops what is cached for an operation that is no longer dispatched. */
  forget(operationId: string): void {
    this.#known.delete(operationId);
  }

  async #read(
    operationId: string,
    signal?: AbortSignal,
  ): Promise<{ record: DispatchRecord; etag: string } | undefined> {
    const got = await this.#store.getJsonVersioned(
      keys.dispatch(operationId),
      dispatchRecordSchema,
      signal,
    );
    if (got) this.#known.set(operationId, { record: got.value, etag: got.etag });
    return got && { record: got.value, etag: got.etag };
  }

  #fresh(operationId: string, dispatched: number): DispatchRecord {
    return {
      v: 1,
      operationId,
      dispatched,
      updatedAt: new Date(this.#clock.now()).toISOString(),
    };
  }
}
