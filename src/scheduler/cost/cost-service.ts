/**
 * The cost ledger on S3 and the reports built from it. The ledger is what S3 already holds —
 * the fleet records (every instance's life, market, type, AZ) and the attempt records (which
 * shards of which operation each instance worked on, and when) — so it is rebuilt after a
 * restart by reading them again; nothing else has to be kept.
 *
 * `compute` writes the report to `keys.cost(op)`; the scheduler calls it when an operation
 * finishes. `get` serves it: 404 for an unknown operation, 409 while it has not finished; a
 * report that is missing for a finished operation (finished before a restart) or provisional
 * (an instance still ran when it was computed) is computed again.
 */
import { mapLimit } from "../../shared/async.ts";
import type { Clock } from "../../shared/clock.ts";
import { NotFoundError, NotReadyError } from "../../shared/errors.ts";
import { keys, parseShardKey } from "../../shared/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { type CostReport, costReportSchema } from "../../shared/schemas/cost.ts";
import { fleetRecordSchema } from "../../shared/schemas/fleet.ts";
import { type Manifest, TERMINAL_STATUSES } from "../../shared/schemas/operation.ts";
import {
  type Attempt,
  attemptSchema,
  type ShardDone,
  shardDoneSchema,
} from "../../shared/schemas/shard.ts";
import { listOperationIds, loadManifest, OPERATION_ID_PATTERN } from "../operations.ts";
import { PRICE_TABLE_DATE } from "./on-demand-prices.ts";
import type { PriceSource } from "./price-source.ts";
import { attemptInterval, buildCostReport, type LedgerInstance } from "./report.ts";

export interface CostServiceDeps {
  store: ObjectStore;
  clock: Clock;
  logger: Logger;
  prices: PriceSource;
}

export interface CostServiceOptions {
  /** Shown in reports as the on-demand prices' source. @default PRICE_TABLE_DATE */
  priceTable?: string;
  /**
   * Other operations (newest first) looked at for instances shared with this one: their fleet
   * records and attempts, when their lifetimes overlap. @default 200
   */
  scanOperations?: number;
}

interface OperationLedger {
  instances: LedgerInstance[];
  attempts: Attempt[];
  done: Map<string, ShardDone>;
}

export class CostService {
  readonly #store: ObjectStore;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #prices: PriceSource;
  readonly #priceTable: string;
  readonly #scan: number;

  constructor(deps: CostServiceDeps, options: CostServiceOptions = {}) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#prices = deps.prices;
    this.#priceTable = options.priceTable ?? PRICE_TABLE_DATE;
    this.#scan = options.scanOperations ?? 200;
  }

  /** The operation's report (see the module comment for 404/409 and recomputing). */
  async get(id: string, signal?: AbortSignal): Promise<CostReport> {
    const manifest = await this.#manifest(id, signal);
    if (!TERMINAL_STATUSES.has(manifest.status)) {
      throw new NotReadyError(
        `operation ${id} is ${manifest.status}: its cost report is written when it finishes`,
        { details: { id, status: manifest.status } },
      );
    }
    const stored = await this.#store.getJson(keys.cost(id), costReportSchema, signal);
    if (stored && !stored.provisional) return stored;
    return this.compute(id, signal);
  }

  /** Builds the report from the ledger and writes it to `keys.cost(op)`. */
  async compute(id: string, signal?: AbortSignal): Promise<CostReport> {
    const manifest = await this.#manifest(id, signal);
    const own = await this.#ledgerOf(id, signal);
    const ownIds = new Set(own.instances.map((i) => i.record.id));
    const workedOn = new Set(own.attempts.map((a) => a.instanceId));
    const relevant = new Set([...ownIds, ...workedOn]);

    const instances = [...own.instances];
    const attempts = own.attempts.filter((a) => relevant.has(a.instanceId));
    const window = this.#window(own);
    if (window && relevant.size > 0) {
      const others = (await listOperationIds(this.#store, signal))
        .filter((o) => o !== id)
        .slice(0, this.#scan);
      await mapLimit(others, 8, async (other) => {
        const m = await loadManifest(this.#store, other, signal).catch(() => undefined);
        if (!m || !overlaps(m, window)) return;
        const ledger = await this.#ledgerOf(other, signal);
        for (const i of ledger.instances) if (workedOn.has(i.record.id)) instances.push(i);
        for (const a of ledger.attempts) if (relevant.has(a.instanceId)) attempts.push(a);
      });
    }
    const report = await buildCostReport({
      operationId: id,
      rows: manifest.result?.rows ?? manifest.rows ?? 0,
      nowMs: this.#clock.now(),
      instances,
      attempts,
      done: own.done,
      prices: this.#prices,
      priceTable: this.#priceTable,
      ...(signal ? { signal } : {}),
    });
    await this.#store.putJson(keys.cost(id), costReportSchema, report, signal);
    this.#logger.info(
      {
        operationId: id,
        totalUsd: report.totalUsd,
        savingPercent: report.savingPercent,
        provisional: report.provisional,
      },
      "cost report written",
    );
    return report;
  }

  async #manifest(id: string, signal?: AbortSignal): Promise<Manifest> {
    // An id that cannot be a key is simply not an operation.
    const manifest = OPERATION_ID_PATTERN.test(id)
      ? await loadManifest(this.#store, id, signal)
      : undefined;
    if (!manifest) throw new NotFoundError(`operation ${id} not found`, { details: { id } });
    return manifest;
  }

  async #ledgerOf(id: string, signal?: AbortSignal): Promise<OperationLedger> {
    const record = await this.#store.getJson(keys.fleet(id), fleetRecordSchema, signal);
    const all = await this.#store.list(keys.shardsPrefix(id), signal);
    const attemptKeys: string[] = [];
    const doneKeys: string[] = [];
    for (const key of all) {
      const rest = parseShardKey(key)?.rest;
      if (rest === "done.json") doneKeys.push(key);
      else if (rest?.startsWith("attempts/")) attemptKeys.push(key);
    }
    const attempts = await mapLimit(attemptKeys, 16, (k) =>
      this.#store.getJson(k, attemptSchema, signal),
    );
    const markers = await mapLimit(doneKeys, 16, (k) =>
      this.#store.getJson(k, shardDoneSchema, signal),
    );
    const done = new Map<string, ShardDone>();
    for (const m of markers) if (m) done.set(m.shardId, m);
    return {
      instances: (record?.instances ?? []).map((r) => ({ record: r, launchedFor: id })),
      attempts: attempts.filter((a): a is Attempt => a !== undefined),
      done,
    };
  }

  /** The span of the operation's instances and attempts, for finding overlapping operations. */
  #window(own: OperationLedger): { from: number; to: number } | undefined {
    const times: number[] = [];
    for (const i of own.instances) times.push(Date.parse(i.record.launchedAt));
    for (const a of own.attempts) {
      const { from, to } = attemptInterval(a);
      times.push(from, to);
    }
    if (times.length === 0) return undefined;
    return { from: Math.min(...times), to: Math.max(this.#clock.now(), ...times) };
  }
}

function overlaps(m: Manifest, window: { from: number; to: number }): boolean {
  const from = Date.parse(m.createdAt);
  const to = m.finishedAt ? Date.parse(m.finishedAt) : Number.POSITIVE_INFINITY;
  return from <= window.to && to >= window.from;
}
