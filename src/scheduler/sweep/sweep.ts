/**
 * The self-healing sweep: a periodic service of the active scheduler (it runs only under the
 * scheduler lease) that finds shards of running operations whose message was lost and sends
 * them to the work queue again, each re-drive with a record (./shard-signs.ts), a log line and
 * a fleet event. What counts as lost is ./sweep-policy.ts's (pure): the work queue was created
 * after the operation (a restarted local stack, a recreated queue), or the work and straggler
 * queues have been empty for longer than the silence window while shards are undone and silent.
 * So an operation never stays `running` with nothing running and nothing queued.
 *
 * Each pass asks SQS for the queues' counts and creation time (GetQueueAttributes), lists the
 * operations and reads the manifests of the live ones; only when a rule may apply does it read
 * an operation's shard records. A pass costs a few requests on a healthy system.
 *
 * Lifecycle: idle → running (start) → draining (stop) → stopped (src/shared/periodic-service.ts).
 */
import type { Clock } from "../../shared/clock.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { PeriodicService, type ServiceState } from "../../shared/periodic-service.ts";
import type { FleetEventKind } from "../../shared/schemas/fleet.ts";
import { type Manifest, TERMINAL_STATUSES } from "../../shared/schemas/operation.ts";
import type { ShardMessage } from "../../shared/schemas/shard.ts";
import type { ShardQueue } from "../../shared/shard-queue.ts";
import { isTransientError } from "../../shared/transient.ts";
import { listOperationIds, loadManifest } from "../operations.ts";
import { enqueueShards } from "../shard-enqueue.ts";
import { ShardSignsReader } from "./shard-signs.ts";
import {
  nextEmptySince,
  type QueueObservation,
  type RedriveDecision,
  shardsToRedrive,
  worthLooking,
} from "./sweep-policy.ts";

/**
 * Where the sweep's fleet events go: the fleet manager's fleet records when it runs (the one
 * writer of fleet records), a records writer of the sweep's own when no fleet manager runs.
 */
export interface FleetEventSink {
  /** Records a fleet event of the operation (written by the next flush) and logs it. */
  event(
    operationId: string,
    kind: FleetEventKind,
    message: string,
    details?: Record<string, unknown>,
  ): void;
  /** Writes the events recorded so far. */
  flush(signal?: AbortSignal): Promise<void>;
}

export interface SweepDeps {
  store: ObjectStore;
  queue: ShardQueue;
  logger: Logger;
  clock: Clock;
  events: FleetEventSink;
  /** The scheduler lease's tenure: no pass starts once it is lost. @default undefined (none) */
  fence?: { check(): void };
}

export interface SweepOptions {
  workQueueUrl: string;
  /** Its counts join the work queue's (a straggler copy is a message too). @default none */
  stragglerQueueUrl?: string;
  /** Pause between passes. */
  intervalMs: number;
  /**
   * How long the queues must look empty, and undone shards silent, before their messages are
   * taken for lost: the visibility timeout plus a margin (SQS's counts are approximate).
   */
  silenceMs: number;
}

/** At most this many shard ids are named in one fleet event or log line. */
const NAMED_SHARDS = 10;

export class Sweep {
  readonly #deps: SweepDeps;
  readonly #options: SweepOptions;
  readonly #signs: ShardSignsReader;
  readonly #service: PeriodicService;
  /** Operations known to be terminal: never read again by this process. */
  readonly #terminal = new Set<string>();
  #emptySince: number | undefined;

  constructor(deps: SweepDeps, options: SweepOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#signs = new ShardSignsReader({ store: deps.store, clock: deps.clock });
    this.#service = new PeriodicService(
      { clock: deps.clock, logger: deps.logger },
      {
        name: "sweep",
        intervalMs: options.intervalMs,
        errorLevel: "warn",
        errorBackoff: { firstMs: options.intervalMs, maxMs: Math.max(options.intervalMs, 60_000) },
      },
      async (signal) => {
        await this.pass(signal);
      },
    );
  }

  get state(): ServiceState {
    return this.#service.state;
  }

  start(): void {
    this.#service.start({
      intervalMs: this.#options.intervalMs,
      silenceMs: this.#options.silenceMs,
    });
  }

  stop(): Promise<void> {
    return this.#service.stop();
  }

  /** One pass (public so tests can drive passes). Resolves the re-drives it made. */
  async pass(signal: AbortSignal = this.#service.signal): Promise<RedriveDecision[]> {
    this.#deps.fence?.check();
    const queue = await this.#observeQueues(signal);
    const ids = (await listOperationIds(this.#deps.store, signal)).filter(
      (id) => !this.#terminal.has(id),
    );
    const made: RedriveDecision[] = [];
    for (const id of ids) {
      try {
        made.push(...(await this.#sweepOperation(id, queue, signal)));
      } catch (err) {
        if (signal.aborted) throw err;
        // One operation's trouble must not hold up the others.
        this.#deps.logger[isTransientError(err) ? "warn" : "error"](
          { err, operationId: id },
          "sweep could not look at the operation; next pass",
        );
      }
    }
    if (made.length > 0) await this.#deps.events.flush(signal);
    return made;
  }

  /** The queues' counts (summed) and the work queue's creation, seen before any shard is read. */
  async #observeQueues(signal: AbortSignal): Promise<QueueObservation> {
    const observedAt = this.#deps.clock.now();
    const { workQueueUrl, stragglerQueueUrl } = this.#options;
    const [work, straggler] = await Promise.all([
      this.#deps.queue.stats(workQueueUrl, signal),
      stragglerQueueUrl ? this.#deps.queue.stats(stragglerQueueUrl, signal) : undefined,
    ]);
    this.#emptySince = nextEmptySince(
      this.#emptySince,
      work.messages + (straggler?.messages ?? 0),
      observedAt,
    );
    return { createdAtMs: work.createdAtMs, emptySinceMs: this.#emptySince };
  }

  async #sweepOperation(
    id: string,
    queue: QueueObservation,
    signal: AbortSignal,
  ): Promise<RedriveDecision[]> {
    const manifest = await loadManifest(this.#deps.store, id, signal);
    if (!manifest) return [];
    if (TERMINAL_STATUSES.has(manifest.status)) {
      this.#terminal.add(id);
      this.#signs.forget(id);
      return [];
    }
    // Only a running operation has every shard's message out and no one else re-sending them
    // (a split re-sends its own; paused and cancelled ones' messages are meant to idle or go).
    if (manifest.status !== "running" || !manifest.shards) return [];
    const op = {
      createdAtMs: Date.parse(manifest.createdAt),
      ...(manifest.startedAt ? { splitDoneMs: Date.parse(manifest.startedAt) } : {}),
    };
    const policy = { now: this.#deps.clock.now(), silenceMs: this.#options.silenceMs };
    if (!worthLooking(queue, op, policy)) return [];
    const shards = await this.#signs.read(manifest, signal);
    const decisions = shardsToRedrive(queue, { ...op, shards }, policy);
    if (decisions.length > 0) await this.#redrive(manifest, decisions, signal);
    return decisions;
  }

  /** Sends the shards again, records each re-drive, and says so in the log and the fleet events. */
  async #redrive(
    manifest: Manifest,
    decisions: RedriveDecision[],
    signal: AbortSignal,
  ): Promise<void> {
    const ranges = new Map((manifest.shards ?? []).map((s) => [s.id, s]));
    const messages: ShardMessage[] = decisions.flatMap((d) => {
      const range = ranges.get(d.shardId);
      return range
        ? [
            {
              v: 1,
              operationId: manifest.id,
              shardId: d.shardId,
              start: range.start,
              end: range.end,
            },
          ]
        : [];
    });
    // Sent first: a re-drive sent twice (the record failed) is harmless, first commit wins.
    await enqueueShards(
      { queue: this.#deps.queue, workQueueUrl: this.#options.workQueueUrl },
      messages,
      signal,
    );
    for (const d of decisions) {
      await this.#signs
        .recordRedrive(manifest, d.shardId, d.reason, signal)
        .catch((err: unknown) => {
          if (signal.aborted) throw err;
          this.#deps.logger.warn(
            { err, operationId: manifest.id, shardId: d.shardId },
            "could not record a re-drive; the shard may be sent once more",
          );
        });
    }
    for (const [reason, group] of groupByReason(decisions)) {
      const named = group.slice(0, NAMED_SHARDS).map((d) => d.shardId);
      const more = group.length > named.length ? ` and ${group.length - named.length} more` : "";
      const why =
        reason === "queue-recreated"
          ? "the work queue was created again after the operation started, so their messages were lost"
          : "no shard message was queued or in flight and these shards showed no sign of life";
      this.#deps.events.event(
        manifest.id,
        "shards-redriven",
        `re-drove ${group.length} shard${group.length === 1 ? "" : "s"} (${named.join(", ")}${more}): ${why}`,
        { reason, shards: group.length, shardIds: named },
      );
    }
  }
}

function groupByReason(decisions: RedriveDecision[]): Map<string, RedriveDecision[]> {
  const groups = new Map<string, RedriveDecision[]>();
  for (const d of decisions) {
    const list = groups.get(d.reason) ?? [];
    list.push(d);
    groups.set(d.reason, list);
  }
  return groups;
}
