/**
 * The scheduler's Prometheus metrics (prom-client, its own registry). Operation, shard, row,
 * fleet and cost series are computed when scraped from what S3 holds (./observe.ts, at most
 * once per `maxAgeMs`, one refresh at a time), so they survive a scheduler restart and include
 * what workers did; API request durations are observed in this process.
 *
 * Rows/s is left to PromQL: `rate(shardfleet_rows_total{outcome="done"}[1m])`.
 */
import { GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Market } from "../../shared/capacity.ts";
import type { Clock } from "../../shared/clock.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { OperationObserver } from "./observe.ts";
import { type MetricsSample, sampleOf } from "./sample.ts";

export interface SchedulerMetricsDeps {
  store: ObjectStore;
  clock: Clock;
  logger: Logger;
  /** For queue depths. @default undefined (no queue series) */
  sqs?: SQSClient;
  /** Hourly prices, for the cost so far of unfinished operations. @default none (0) */
  hourlyPrice?: (market: Market, type: string) => number | undefined;
}

export interface SchedulerMetricsOptions {
  /** The queues to report depths of, by name. @default {} */
  queues?: Record<string, string>;
  /** A scrape within this long of the last refresh reuses it. @default 5000 */
  maxAgeMs?: number;
  /** Per-operation series stay this long after the operation ended. @default 3600000 */
  recentMs?: number;
}

/**
 * Sets a counter to an absolute value derived from records (they only grow); the caller has
 * reset it at the start of its collect.
 */
function setCounter(counter: Counter<string>, labels: Record<string, string>, value: number) {
  counter.inc(labels, value);
}

export class SchedulerMetrics {
  readonly registry = new Registry();
  readonly #deps: SchedulerMetricsDeps;
  readonly #observer: OperationObserver;
  readonly #options: Required<SchedulerMetricsOptions>;
  readonly #requests: Histogram<"method" | "route" | "status">;
  #sample: MetricsSample | undefined;
  #sampledAt = Number.NEGATIVE_INFINITY;
  #refreshing: Promise<void> | undefined;
  #queues: Array<{ queue: string; visible: number; inFlight: number }> = [];

  constructor(deps: SchedulerMetricsDeps, options: SchedulerMetricsOptions = {}) {
    this.#deps = deps;
    this.#options = {
      queues: options.queues ?? {},
      maxAgeMs: options.maxAgeMs ?? 5_000,
      recentMs: options.recentMs ?? 3_600_000,
    };
    this.#observer = new OperationObserver(
      { store: deps.store },
      { settleMs: this.#options.recentMs },
    );
    const registers = [this.registry];
    const sample = () => this.#sample;
    this.#requests = new Histogram({
      name: "shardfleet_api_request_duration_seconds",
      help: "API request durations by method, route and status",
      labelNames: ["method", "route", "status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    new Gauge({
      name: "shardfleet_operations",
      help: "Operations by tenant and status",
      labelNames: ["tenant", "status"],
      registers,
      collect() {
        this.reset();
        for (const o of sample()?.operations ?? []) {
          this.set({ tenant: o.tenant, status: o.status }, o.count);
        }
      },
    });
    new Gauge({
      name: "shardfleet_shards",
      help: "Shards of unfinished operations by state",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        const s = sample();
        if (s) for (const [state, n] of Object.entries(s.shards)) this.set({ state }, n);
      },
    });
    new Counter({
      name: "shardfleet_rows_total",
      help: "Rows committed over every operation in the bucket (done includes the failed ones)",
      labelNames: ["outcome"],
      registers,
      collect() {
        this.reset();
        const s = sample();
        if (!s) return;
        setCounter(this, { outcome: "done" }, s.rows.done);
        setCounter(this, { outcome: "failed" }, s.rows.failed);
      },
    });
    new Gauge({
      name: "shardfleet_operation_rows",
      help: "Rows of unfinished and recently ended operations (outcome done, failed, total)",
      labelNames: ["operation", "tenant", "outcome"],
      registers,
      collect() {
        this.reset();
        for (const o of sample()?.perOperation ?? []) {
          const l = { operation: o.id, tenant: o.tenant };
          this.set({ ...l, outcome: "done" }, o.rowsDone);
          this.set({ ...l, outcome: "failed" }, o.rowsFailed);
          if (o.rowsTotal !== null) this.set({ ...l, outcome: "total" }, o.rowsTotal);
        }
      },
    });
    new Counter({
      name: "shardfleet_reclaims_total",
      help: "Shard attempts ended by a reclaim: notice=true after a spot notice (interrupted), false without (lost)",
      labelNames: ["notice"],
      registers,
      collect() {
        this.reset();
        const s = sample();
        if (!s) return;
        setCounter(this, { notice: "true" }, s.reclaims.notice);
        setCounter(this, { notice: "false" }, s.reclaims.noNotice);
      },
    });
    new Counter({
      name: "shardfleet_on_demand_fallbacks_total",
      help: "Times every spot pool was cooling and capacity was bought on-demand",
      registers,
      collect() {
        this.reset();
        const s = sample();
        if (s) setCounter(this, {}, s.fallbacks);
      },
    });
    new Counter({
      name: "shardfleet_straggler_copies_total",
      help: "Straggler shards copied to the straggler queue",
      registers,
      collect() {
        this.reset();
        const s = sample();
        if (s) setCounter(this, {}, s.stragglerCopies);
      },
    });
    new Gauge({
      name: "shardfleet_instances",
      help: "Live (pending or running) instances by market and role",
      labelNames: ["market", "role"],
      registers,
      collect() {
        this.reset();
        for (const i of sample()?.instances ?? []) {
          this.set({ market: i.market, role: i.role }, i.count);
        }
      },
    });
    new Counter({
      name: "shardfleet_cost_usd_total",
      help: "Cost so far by tenant: final cost reports, plus live instance time at its hourly price",
      labelNames: ["tenant"],
      registers,
      collect() {
        this.reset();
        for (const c of sample()?.costUsd ?? []) setCounter(this, { tenant: c.tenant }, c.usd);
      },
    });
    new Gauge({
      name: "shardfleet_fleet_hourly_usd",
      help: "What the live instances cost an hour (USD)",
      registers,
      collect() {
        this.set(sample()?.hourlyUsd ?? 0);
      },
    });
    const queues = () => this.#queues;
    new Gauge({
      name: "shardfleet_queue_messages",
      help: "Approximate messages in each queue (state visible or in_flight)",
      labelNames: ["queue", "state"],
      registers,
      collect() {
        this.reset();
        for (const q of queues()) {
          this.set({ queue: q.queue, state: "visible" }, q.visible);
          this.set({ queue: q.queue, state: "in_flight" }, q.inFlight);
        }
      },
    });
  }

  /** Records one API request (called by the routes' onResponse hook). */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.#requests.observe({ method, route, status: String(status) }, seconds);
  }

  /** The exposition text, refreshed from S3 and SQS when older than `maxAgeMs`. */
  async render(signal?: AbortSignal): Promise<string> {
    if (this.#deps.clock.now() - this.#sampledAt > this.#options.maxAgeMs) {
      this.#refreshing ??= this.#refresh(signal).finally(() => {
        this.#refreshing = undefined;
      });
      await this.#refreshing;
    }
    return this.registry.metrics();
  }

  /** The live instances' hourly spend, refreshed as for a scrape. */
  async hourlyUsd(signal?: AbortSignal): Promise<number> {
    await this.render(signal);
    return this.#sample?.hourlyUsd ?? 0;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async #refresh(signal?: AbortSignal): Promise<void> {
    const now = this.#deps.clock.now();
    const observations = await this.#observer.observeAll(now, signal);
    this.#sample = sampleOf(observations, now, {
      recentMs: this.#options.recentMs,
      ...(this.#deps.hourlyPrice ? { hourlyPrice: this.#deps.hourlyPrice } : {}),
    });
    this.#queues = await this.#queueDepths(signal);
    this.#sampledAt = now;
  }

  async #queueDepths(signal?: AbortSignal) {
    const sqs = this.#deps.sqs;
    if (!sqs) return [];
    const out: Array<{ queue: string; visible: number; inFlight: number }> = [];
    for (const [queue, url] of Object.entries(this.#options.queues)) {
      try {
        const res = await sqs.send(
          new GetQueueAttributesCommand({
            QueueUrl: url,
            AttributeNames: [
              "ApproximateNumberOfMessages",
              "ApproximateNumberOfMessagesNotVisible",
            ],
          }),
          signal ? { abortSignal: signal } : {},
        );
        out.push({
          queue,
          visible: Number(res.Attributes?.ApproximateNumberOfMessages ?? 0),
          inFlight: Number(res.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
        });
      } catch (err) {
        // One queue's trouble leaves its series out of this scrape, not the rest.
        this.#deps.logger.warn({ err, queue }, "could not read a queue's depth for /metrics");
      }
    }
    return out;
  }
}
