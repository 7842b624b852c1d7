/**
 * Where an operation's seconds went, from the records it left in S3 (manifest, attempt records,
 * commit markers) and the times the bench saw its status change: the split, the wait for the
 * first shard, how busy the instances were while shards ran, the wait between the last commit
 * and the merge, the merge, and the wait until the bench saw the end. Figures for
 * bench/pipeline, not assertions.
 */
import { keys, parseShardKey } from "../src/shared/keys.ts";
import type { ObjectStore } from "../src/shared/object-store.ts";
import type { Manifest } from "../src/shared/schemas/operation.ts";
import { type Attempt, attemptSchema, shardDoneSchema } from "../src/shared/schemas/shard.ts";

export interface Timeline {
  /** ms from the operation's creation (its 202). */
  splitDoneMs: number;
  firstShardMs: number;
  lastCommitMs: number;
  /** When the bench saw `merging` (read every 100 ms), and the operation's end. */
  mergingSeenMs: number | undefined;
  finishedMs: number;
  /** When the bench saw the end (read every 100 ms). */
  seenMs: number;
  attempts: number;
  /** Mean time from a shard's receipt to its commit. */
  meanShardMs: number;
  /** Per instance, the time between its first receipt and last commit with no shard running. */
  idleMs: Record<string, number>;
  /** Σ shard time ÷ (first receipt → last commit × instances): shards in flight per instance. */
  meanInFlight: number;
}

const ms = (iso: string) => Date.parse(iso);

/** Length of the union of [start, end) intervals. */
function unionMs(intervals: Array<[number, number]>): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let [from, to] = [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY];
  for (const [s, e] of sorted) {
    if (s > to) {
      if (to > from) total += to - from;
      [from, to] = [s, e];
    } else to = Math.max(to, e);
  }
  if (to > from) total += to - from;
  return total;
}

export async function readTimeline(
  store: ObjectStore,
  manifest: Manifest,
  seen: { mergingAt?: number | undefined; endAt: number },
): Promise<Timeline> {
  const t0 = ms(manifest.createdAt);
  const attempts: Attempt[] = [];
  const commits: number[] = [];
  for (const key of await store.list(keys.shardsPrefix(manifest.id))) {
    const parsed = parseShardKey(key);
    if (!parsed || parsed.scratch) continue;
    if (parsed.rest === "done.json") {
      const done = await store.getJson(key, shardDoneSchema);
      if (done) commits.push(ms(done.committedAt));
    } else if (parsed.rest.startsWith("attempts/")) {
      const attempt = await store.getJson(key, attemptSchema);
      if (attempt) attempts.push(attempt);
    }
  }
  const spans = attempts
    .filter((a) => a.endedAt !== undefined)
    .map((a) => ({ instance: a.instanceId, from: ms(a.startedAt), to: ms(a.endedAt!) }));
  const firstStart = Math.min(...spans.map((s) => s.from));
  const lastCommit = Math.max(...commits);
  const byInstance = new Map<string, Array<[number, number]>>();
  for (const s of spans) {
    const list = byInstance.get(s.instance) ?? [];
    list.push([s.from, s.to]);
    byInstance.set(s.instance, list);
  }
  const idleMs: Record<string, number> = {};
  for (const [instance, list] of byInstance) {
    const first = Math.min(...list.map((i) => i[0]));
    const last = Math.max(...list.map((i) => i[1]));
    idleMs[instance] = last - first - unionMs(list);
  }
  const shardMs = spans.reduce((sum, s) => sum + (s.to - s.from), 0);
  return {
    splitDoneMs: manifest.startedAt ? ms(manifest.startedAt) - t0 : Number.NaN,
    firstShardMs: firstStart - t0,
    lastCommitMs: lastCommit - t0,
    mergingSeenMs: seen.mergingAt === undefined ? undefined : seen.mergingAt - t0,
    finishedMs: manifest.finishedAt ? ms(manifest.finishedAt) - t0 : Number.NaN,
    seenMs: seen.endAt - t0,
    attempts: spans.length,
    meanShardMs: spans.length ? shardMs / spans.length : Number.NaN,
    idleMs,
    meanInFlight: shardMs / ((lastCommit - firstStart) * Math.max(1, byInstance.size)),
  };
}

/** The timeline as lines for the bench's report. */
export function formatTimeline(rows: number, t: Timeline): string[] {
  const s = (n: number | undefined) => (n === undefined ? "n/a" : `${(n / 1000).toFixed(2)} s`);
  const idle = Object.entries(t.idleMs)
    .map(([name, v]) => `${name} ${s(v)}`)
    .join(", ");
  return [
    `  timeline, ${rows.toLocaleString("en-US")} rows (from the 202): split done ${s(t.splitDoneMs)}; first shard received ${s(t.firstShardMs)}; last commit ${s(t.lastCommitMs)}; merging seen ${s(t.mergingSeenMs)}; done ${s(t.finishedMs)}; seen by the bench ${s(t.seenMs)}`,
    `    ${t.attempts} attempts, mean ${s(t.meanShardMs)} receipt → commit; ${t.meanInFlight.toFixed(2)} shards in flight per instance on average from the first receipt to the last commit; time with none running: ${idle}`,
  ];
}
