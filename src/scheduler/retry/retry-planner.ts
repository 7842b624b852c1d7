/**
 * Plans the open retry of an operation (the scheduler's job once `POST /operations/:id/retry`
 * moved it back to `running`): for each shard, the rows whose latest outcome is an error
 * (./retry-plan.ts) become the slice of the shard's retry shard (`retryShardIdFor`), filtered
 * from the shard's own slice (read through src/shared/slices.ts: sheet XML or NDJSON) and written
 * as NDJSON input rows, which workers and the merger read for a slice key with no XML slice; one
 * message per retry shard goes to the work queue; then the state
 * machine records the retry's shards (`retryPlanned`).
 *
 * Messages go out before the record: a scheduler that dies in between plans again from the same
 * records, writes the same slices and sends the same messages, which workers take as duplicates
 * (a committed shard is skipped, the first commit wins). Recorded first, a crash would leave
 * shards no message ever runs.
 */
import { mapLimit } from "../../shared/async.ts";
import type { Clock } from "../../shared/clock.ts";
import { NotFoundError, RetryableError } from "../../shared/errors.ts";
import { keys, retryShardIdFor } from "../../shared/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { type Manifest, openRetry, type RetryShard } from "../../shared/schemas/operation.ts";
import {
  readInputRows,
  SliceContexts,
  SliceMissingError,
  type SliceRef,
} from "../../shared/slices.ts";
import { loadShardRuns, readOutcomes } from "../merger.ts";
import type { OperationLifecycle } from "../operation-lifecycle.ts";
import type { ShardEnqueuer } from "../shard-enqueue.ts";
import { rowsToRetry, withRetryPlanned } from "./retry-plan.ts";

export interface RetryPlannerDeps {
  store: ObjectStore;
  /** The scheduler's one enqueue path (../shard-enqueue.ts), through its dispatcher. */
  queue: ShardEnqueuer;
  lifecycle: Pick<OperationLifecycle, "amend">;
  clock: Clock;
  logger: Logger;
}

/**
 * Plans the open retry of `manifest` (no-op when it has none, or it is planned already).
 * Resolves the retry's shards.
 */
export async function planRetry(
  deps: RetryPlannerDeps,
  manifest: Manifest,
  signal: AbortSignal,
): Promise<RetryShard[]> {
  const retry = openRetry(manifest);
  const shards = manifest.shards;
  if (!retry || retry.shards || !shards) return retry?.shards ?? [];
  const op = manifest.id;
  const slices = new SliceContexts({ store: deps.store }, { maxCached: 1 });
  const planned = await mapLimit(shards, 8, async (base): Promise<RetryShard | undefined> => {
    const [runs] = await loadShardRuns(deps.store, manifest, [base], signal);
    const { outcomes } = await readOutcomes(deps.store, base, runs ?? [], signal);
    const rows = rowsToRetry(base, outcomes);
    if (rows.length === 0) return undefined;
    const id = retryShardIdFor(base.id, retry.number);
    const written = await writeRetrySlice(
      { store: deps.store, slices },
      { operationId: op, shardId: base.id, start: base.start, end: base.end },
      manifest.headers.length,
      id,
      new Set(rows),
      signal,
    );
    return { id, base: base.id, start: base.start, end: base.end, rows: written };
  });
  const retryShards = planned.filter((s): s is RetryShard => s !== undefined && s.rows > 0);
  await deps.queue.enqueueShards(
    retryShards.map((s) => ({
      v: 1,
      operationId: op,
      shardId: s.id,
      start: s.start,
      end: s.end,
      retry: retry.number,
    })),
    signal,
  );
  const now = new Date(deps.clock.now()).toISOString();
  const result = await deps.lifecycle.amend(
    op,
    "retryPlanned",
    (current) => ({ retries: withRetryPlanned(current.retries ?? [], retryShards, now) }),
    signal,
  );
  if (result.outcome === "contended") throw new RetryableError("retryPlanned: manifest contended");
  const rows = retryShards.reduce((sum, s) => sum + s.rows, 0);
  deps.logger.info(
    { retry: retry.number, shards: retryShards.length, rows, outcome: result.outcome },
    "retry planned",
  );
  return retryShards;
}

/**
 * Copies the input rows of `rows` from the base shard's slice into the retry shard's (NDJSON,
 * one fitted `InputRow` per line); their count.
 */
async function writeRetrySlice(
  deps: { store: ObjectStore; slices: SliceContexts },
  base: SliceRef,
  width: number,
  retryShard: string,
  rows: ReadonlySet<number>,
  signal: AbortSignal,
): Promise<number> {
  const lines: string[] = [];
  try {
    for await (const row of readInputRows(deps.store, deps.slices, base, width, signal)) {
      if (rows.has(row.i)) lines.push(JSON.stringify(row));
    }
  } catch (err) {
    if (!(err instanceof SliceMissingError)) throw err;
    throw new NotFoundError(
      `shard input of ${base.shardId} is gone (expired scratch?): its failed rows cannot be retried`,
      { cause: err },
    );
  }
  if (lines.length > 0) {
    await deps.store.putText(
      keys.shardInput(base.operationId, retryShard),
      `${lines.join("\n")}\n`,
      "application/x-ndjson",
      signal,
    );
  }
  return lines.length;
}
