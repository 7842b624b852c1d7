/**
 * The discrete-event simulator: one operation of `shards` shards run by a fleet that the LIVE
 * fleet policy steers (`planFleet`, `recordLaunchOutcome`, `fleetInstancesFrom`,
 * `withSpotSignal` from src/scheduler/fleet/policy.ts) and billed by the LIVE cost code
 * (`billInstance`, `attributeInstance`, `shardWaste` from src/scheduler/cost/). Only the world
 * is modelled here: CreateFleet latency and pool capacity (with outages), boot, spot prices,
 * interruptions (with or without the two-minute notice), shard times, the checkpoint rule and
 * the queues' delivery (a released message is visible at once; a dead worker's after the
 * visibility timeout).
 *
 * Speed: per-shard and per-attempt state live in typed or packed arrays and the event queue
 * allocates nothing per event; objects are made only where the live code takes them (fleet
 * instances, running shards, launch results, busy intervals for attribution).
 *
 * Deviation, stated: the policy gets a uniform sample of 2,001 committed shard durations instead
 * of all of them (it only takes their median, for stragglers; sorting a million each pass would
 * dominate the run).
 */

import { attributeInstance, type BusyInterval, shardWaste } from "../scheduler/cost/attribution.ts";
import { billInstance } from "../scheduler/cost/billing.ts";
import { ON_DEMAND_USD_PER_HOUR } from "../scheduler/cost/on-demand-prices.ts";
import {
  emptyFleetMemory,
  type FleetInstance,
  type FleetMemory,
  type FleetPolicyOptions,
  fleetInstancesFrom,
  type LaunchDecision,
  type OperationState,
  type PoolFailure,
  planFleet,
  type RunningShard,
  recordLaunchOutcome,
  withSpotSignal,
} from "../scheduler/fleet/policy.ts";
import type { Pool } from "../shared/capacity.ts";
import { EventQueue } from "./event-queue.ts";
import { SimPools, SimPrices } from "./market.ts";
import { interruptionRate, type SimParams } from "./params.ts";
import { type Random, stream } from "./random.ts";
import type { Variant } from "./variants.ts";

const OP = "op-sim";
const HOUR = 3_600_000;
const SAMPLE = 2001;
/** Code of the pool failures a baseline injects to keep a market closed. */
const CLOSED = "SimulatedMarketClosed";

const K_PLAN = 0;
const K_LAUNCH = 1;
const K_READY = 2;
const K_END = 3;
const K_NOTICE = 4;
const K_RECLAIM = 5;
const K_VISIBLE = 6;
const K_OUTAGE_START = 7;
const K_OUTAGE_END = 8;
const K_PRICE = 9;
const K_STOP = 10;

/** The fleet manager re-plans at most this often in one pass (as the live loop). */
const MAX_PLANS_PER_PASS = 4;

export interface SimResult {
  policy: string;
  description: string;
  finished: boolean;
  /** Why the run stopped early (horizon, or the policy failed the operation). */
  unfinishedReason?: string;
  makespanS: number;
  costUsd: number;
  spotUsd: number;
  onDemandUsd: number;
  idleUsd: number;
  wastedRows: number;
  wastedUsd: number;
  reclaims: number;
  reclaimsWithNotice: number;
  /** On-demand worker instances launched while spot was allowed (the policy's fallback). */
  fallbackInstances: number;
  stragglerCopies: number;
  instancesLaunched: number;
  createFleetCalls: number;
  /** Most CreateFleet calls in flight at once (at most the launchConcurrency parameter). */
  peakLaunchesInFlight: number;
  /** From the start until the fleet first reached its size (all-on-demand: one call). */
  rampS: number;
  /** When the first launch call returned with instances. */
  firstLaunchS: number;
  peakInstances: number;
  peakSpotVcpus: number;
  peakInFlightMessages: number;
  peakPutsPerSecond: number;
  planRounds: number;
  events: number;
}

/** vCPUs of an instance type by its size suffix (large = 2, xlarge = 4, Nxlarge = 4N). */
export function vcpusOf(instanceType: string): number {
  const size = instanceType.slice(instanceType.indexOf(".") + 1);
  if (size === "large") return 2;
  if (size === "medium") return 2;
  if (size === "xlarge") return 4;
  const n = Number.parseInt(size, 10);
  return Number.isFinite(n) ? 4 * n : 2;
}

/** Runs one policy variant in the world `p` describes. Deterministic for a given seed. */
export function simulate(p: SimParams, variant: Variant): SimResult {
  return new Simulation(p, variant).run();
}

class Simulation {
  readonly p: SimParams;
  readonly v: Variant;
  readonly q = new EventQueue();
  readonly policy: FleetPolicyOptions;
  readonly spi: number;
  readonly pools: Pool[];
  readonly hazardPerMs: number;
  /** One random stream per kind of draw, so draws of one kind never shift those of another. */
  readonly rng: { boot: Random; interrupt: Random; price: Random; sample: Random; host: Random };
  readonly poolRng: Random[];

  readonly prices: SimPrices;
  readonly market: SimPools;

  // Shards.
  readonly n: number;
  readonly rows: number;
  readonly factor: Float32Array;
  readonly cursor: Int32Array;
  readonly firstStart: Float64Array;
  readonly committed: Uint8Array;
  readonly interruptions: Uint16Array;
  readonly active: Uint8Array;
  readonly shardAtt: Int32Array;
  readonly processed: Float64Array;
  readonly shardUsd: Float64Array;
  readonly runObj: (RunningShard | undefined)[];
  readonly runPos: Int32Array;
  readonly running: RunningShard[] = [];
  readonly mainQ: Int32Array;
  mainHead = 0;
  mainLen = 0;
  readonly stragQ: number[] = [];
  stragHead = 0;
  done = 0;
  readonly sample: number[] = [];
  sampleSeen = 0;

  // Attempts (never reused: the index is the attempt id).
  readonly attShard: number[] = [];
  readonly attInst: number[] = [];
  readonly attStart: number[] = [];
  readonly attRowMs: number[] = [];
  readonly attStartRow: number[] = [];
  readonly attAlive: number[] = [];
  readonly attFromStrag: number[] = [];
  runningAttempts = 0;

  // Instances (the index is the number in the id `i-N`).
  readonly inst: (FleetInstance | undefined)[] = [];
  readonly instPool: number[] = [];
  readonly instAlive: number[] = [];
  readonly instDraining: number[] = [];
  readonly instFree: number[] = [];
  /** Row-time multiplier of the host (1, or slowHostFactor for a noisy one). */
  readonly instSpeed: number[] = [];
  readonly instPos: number[] = [];
  readonly instAttempts: number[][] = [];
  readonly instBusy: ((BusyInterval & { shard: number })[] | undefined)[] = [];
  readonly fleet: FleetInstance[] = [];
  readonly freeSpot: number[] = [];
  readonly freeOd: number[] = [];
  nextId = 0;
  liveSpotVcpus = 0;

  // Policy loop.
  memory: FleetMemory = emptyFleetMemory();
  readonly opState: OperationState;
  /** Launch decisions being carried out, by the index their K_LAUNCH event carries. */
  readonly pendingLaunches: (LaunchDecision | undefined)[] = [];
  /** The current plan's launches not started yet (started from `launchHead` on). */
  launchQueue: LaunchDecision[] = [];
  launchHead = 0;
  /** A launch of the current plan reported errors: start no more, re-plan once all returned. */
  launchErrored = false;
  passGen = 0;
  plansThisPass = 0;
  launchesInFlight = 0;
  failed: string | undefined;

  // Results.
  readonly r: SimResult;
  commitsSincePlan = 0;
  lastPlanAt = 0;
  reachedSize = false;

  constructor(p: SimParams, v: Variant) {
    this.p = p;
    this.v = v;
    const big = v.oneInstance === true;
    this.spi = big ? p.shardsPerInstance * p.bigInstanceFactor : p.shardsPerInstance;
    const types = big ? [`${p.instanceTypes[0]}×${p.bigInstanceFactor}`] : p.instanceTypes;
    this.pools = big
      ? [{ instanceType: types[0]!, availabilityZone: p.availabilityZones[0]! }]
      : types.flatMap((t) =>
          p.availabilityZones.map((az) => ({ instanceType: t, availabilityZone: az })),
        );
    this.policy = {
      pools: this.pools,
      shardsPerInstance: this.spi,
      maxInstances: big ? 1 : p.maxInstances,
      ...v.policy,
    };
    this.hazardPerMs = v.spot ? interruptionRate(p).perInstanceHour / HOUR : 0;
    this.rng = {
      boot: stream(p.seed, 5),
      interrupt: stream(p.seed, 2),
      price: stream(p.seed, 4),
      sample: stream(p.seed, 6),
      host: stream(p.seed, 7),
    };
    this.poolRng = this.pools.map((_, i) => stream(p.seed, 100 + i));

    const onDemand = new Map<string, number>();
    for (const t of types) {
      onDemand.set(
        t,
        big
          ? (ON_DEMAND_USD_PER_HOUR[p.instanceTypes[0]!] ?? 0.1) * p.bigInstanceFactor
          : (ON_DEMAND_USD_PER_HOUR[t] ?? 0.1),
      );
    }
    this.prices = new SimPrices(onDemand, p.spotRatio);
    this.market = new SimPools(this.pools, p.poolSpotCapacity);

    const n = p.shards;
    this.n = n;
    this.rows = p.rowsPerShard;
    // Shard times are drawn once per shard index, so every variant of a seed gets the same shards.
    this.factor = new Float32Array(n);
    const shardRng = stream(p.seed, 1);
    for (let s = 0; s < n; s++) {
      const slow = shardRng.next() < p.slowFraction ? p.slowFactor : 1;
      this.factor[s] = shardRng.lognormalMean1(p.shardTimeSigma) * slow;
    }
    this.cursor = new Int32Array(n);
    this.firstStart = new Float64Array(n).fill(Number.NaN);
    this.committed = new Uint8Array(n);
    this.interruptions = new Uint16Array(n);
    this.active = new Uint8Array(n);
    this.shardAtt = new Int32Array(2 * n).fill(-1);
    this.processed = new Float64Array(n);
    this.shardUsd = new Float64Array(n);
    this.runObj = new Array(n);
    this.runPos = new Int32Array(n).fill(-1);
    this.mainQ = new Int32Array(n);
    for (let s = 0; s < n; s++) this.mainQ[s] = s;
    this.mainLen = n;
    this.opState = {
      id: OP,
      pendingShards: n,
      running: this.running,
      completedShardMs: this.sample,
    };

    this.r = {
      policy: v.name,
      description: v.description,
      finished: false,
      makespanS: 0,
      costUsd: 0,
      spotUsd: 0,
      onDemandUsd: 0,
      idleUsd: 0,
      wastedRows: 0,
      wastedUsd: 0,
      reclaims: 0,
      reclaimsWithNotice: 0,
      fallbackInstances: 0,
      stragglerCopies: 0,
      instancesLaunched: 0,
      createFleetCalls: 0,
      peakLaunchesInFlight: 0,
      rampS: 0,
      firstLaunchS: Number.NaN,
      peakInstances: 0,
      peakSpotVcpus: 0,
      peakInFlightMessages: 0,
      peakPutsPerSecond: 0,
      planRounds: 0,
      events: 0,
    };
  }

  run(): SimResult {
    const q = this.q;
    q.push(0, K_PLAN, 0);
    q.push(HOUR, K_PRICE);
    if (this.v.spot && this.p.outagesPerPoolHour > 0) {
      for (let i = 0; i < this.pools.length; i++) {
        q.push(this.poolRng[i]!.exponential(HOUR / this.p.outagesPerPoolHour), K_OUTAGE_START, i);
      }
    }
    let events = 0;
    let end = 0;
    while (q.pop()) {
      const now = q.time;
      if (now > this.p.horizonMs) {
        this.r.unfinishedReason = `not finished within the horizon (${this.p.horizonMs / HOUR} h)`;
        end = this.p.horizonMs;
        break;
      }
      events++;
      end = now;
      switch (q.kind) {
        case K_PLAN:
          if (q.a === this.passGen) this.plan(now);
          break;
        case K_LAUNCH:
          this.launchReturns(q.a, now);
          break;
        case K_READY:
          this.ready(q.a, now);
          break;
        case K_END:
          this.attemptEnds(q.a, now);
          break;
        case K_STOP:
          if (this.attAlive[q.a] === 1) this.finishAttempt(q.a, now, this.rowsDone(q.a, now));
          break;
        case K_NOTICE:
          this.notice(q.a, now);
          break;
        case K_RECLAIM:
          this.reclaim(q.a, q.b === 1, now);
          break;
        case K_VISIBLE:
          if (this.committed[q.a] === 0) this.enqueue(q.a);
          break;
        case K_OUTAGE_START:
          this.market.setOutage(q.a, true);
          q.push(now + this.poolRng[q.a]!.exponential(this.p.outageMeanMs), K_OUTAGE_END, q.a);
          break;
        case K_OUTAGE_END:
          this.market.setOutage(q.a, false);
          q.push(
            now + this.poolRng[q.a]!.exponential(HOUR / this.p.outagesPerPoolHour),
            K_OUTAGE_START,
            q.a,
          );
          break;
        case K_PRICE:
          this.prices.step(now, this.p.spotVolatility, this.rng.price);
          q.push(now + HOUR, K_PRICE);
          break;
      }
      this.dispatch(now);
      if (this.isOver()) break;
    }
    // Whatever still runs (horizon reached) is billed up to the end.
    for (const fi of [...this.fleet]) this.endInstance(Number(fi.id.slice(2)), end);
    this.r.events = events;
    return this.finish();
  }

  isOver(): boolean {
    const finished = this.done === this.n || this.failed !== undefined;
    return finished && this.fleet.length === 0 && this.launchesInFlight === 0;
  }

  finish(): SimResult {
    const r = this.r;
    r.finished = this.done === this.n;
    if (this.failed !== undefined) r.unfinishedReason = this.failed;
    for (let s = 0; s < this.n; s++) {
      if (this.processed[s] === 0) continue;
      const w = shardWaste({
        committedRows: this.committed[s] === 1 ? this.rows : 0,
        attempts: [
          {
            attemptId: "all",
            rowsDone: this.processed[s]!,
            cause: "summed",
            usd: this.shardUsd[s]!,
          },
        ],
      });
      r.wastedRows += w.rowsRedone;
      r.wastedUsd += w.usd;
    }
    return r;
  }

  // ---- the fleet manager's pass -------------------------------------------------------------

  plan(now: number): void {
    this.r.planRounds++;
    this.opState.pendingShards = this.n - this.done - this.running.length;
    const over = this.done === this.n || this.failed !== undefined;
    const plan = planFleet(
      {
        operations: over ? [] : [this.opState],
        instances: this.fleet,
        prices: this.prices.table,
        memory: this.closeMarkets(this.memory, now),
      },
      now,
      this.policy,
    );
    this.memory = plan.memory;
    this.notePuts(now);
    ++this.passGen;
    this.launchQueue = [];
    this.launchHead = 0;
    this.launchErrored = false;
    for (const d of plan.decisions) {
      switch (d.type) {
        case "terminate":
          for (const id of d.ids) this.endInstance(Number(id.slice(2)), now);
          break;
        case "copyToStraggler": {
          const s = Number(d.shardId);
          this.r.stragglerCopies++;
          if (this.committed[s] === 0) this.stragQ.push(s);
          break;
        }
        case "launch":
          this.launchQueue.push(d);
          break;
        case "failOperation":
          this.failed = `${d.code}: ${d.message}`;
          break;
        default:
          break;
      }
    }
    this.startLaunches(now);
    if (this.launchesInFlight === 0) this.planCarriedOut(now);
  }

  /**
   * As the live fleet manager (DecisionRunner): up to `launchConcurrency` (the live option,
   * SHARDFLEET_LAUNCH_CONCURRENCY) calls of a plan in flight, the next starting as one returns,
   * none once a launch of the plan reported errors.
   */
  startLaunches(now: number): void {
    while (
      !this.launchErrored &&
      this.launchesInFlight < this.p.launchConcurrency &&
      this.launchHead < this.launchQueue.length
    ) {
      const d = this.launchQueue[this.launchHead++]!;
      this.pendingLaunches.push(d);
      this.launchesInFlight++;
      this.r.peakLaunchesInFlight = Math.max(this.r.peakLaunchesInFlight, this.launchesInFlight);
      this.q.push(now + this.p.createFleetLatencyMs, K_LAUNCH, this.pendingLaunches.length - 1);
    }
  }

  /**
   * Every launch of the plan has returned. After errors the live loop re-plans at once (up to
   * MAX_PLANS_PER_PASS plans a pass); otherwise the pass is over and, as in `PeriodicService`, the next
   * one starts an interval after it ended.
   */
  planCarriedOut(now: number): void {
    const gen = this.passGen;
    if (this.launchErrored && this.plansThisPass + 1 < MAX_PLANS_PER_PASS) {
      this.plansThisPass++;
      this.q.push(now, K_PLAN, gen);
    } else {
      this.plansThisPass = 0;
      this.q.push(now + this.p.planIntervalMs, K_PLAN, gen);
    }
  }

  /** A baseline's closed market: every pool of it reports a capacity error at every plan. */
  closeMarkets(memory: FleetMemory, now: number): FleetMemory {
    const closed = [
      ...(this.v.spot ? [] : ["spot" as const]),
      ...(this.v.onDemand ? [] : ["on-demand" as const]),
    ];
    if (closed.length === 0) return memory;
    const failures: PoolFailure[] = memory.poolFailures.filter((f) => f.code !== CLOSED);
    for (const market of closed) {
      for (const pool of this.pools) {
        failures.push({
          market,
          pool,
          at: now,
          code: CLOSED,
          message: `${this.v.name} does not use ${market}`,
        });
      }
    }
    return { ...memory, poolFailures: failures };
  }

  launchReturns(index: number, now: number): void {
    this.launchesInFlight--;
    const d = this.pendingLaunches[index]!;
    this.pendingLaunches[index] = undefined;
    // Every call that started is recorded, even one in flight when another reported errors.
    this.r.createFleetCalls++;
    const result = this.market.fulfil(
      d,
      now,
      () => this.nextId++,
      (id, pool) => {
        this.instPool[id] = pool;
      },
    );
    this.memory = recordLaunchOutcome(this.memory, d, result, now);
    if (result.launched.length > 0 && Number.isNaN(this.r.firstLaunchS))
      this.r.firstLaunchS = now / 1000;
    for (const fi of fleetInstancesFrom(d, result.launched)) this.addInstance(fi, now);
    if (d.market === "on-demand" && d.role === "worker" && this.v.spot) {
      this.r.fallbackInstances += result.launched.length;
    }
    // As the live loop: the rest of the plan was planned assuming this launch would succeed.
    if (result.errors.length > 0) this.launchErrored = true;
    this.startLaunches(now);
    if (this.launchesInFlight === 0) this.planCarriedOut(now);
  }

  // ---- instances ----------------------------------------------------------------------------

  addInstance(fi: FleetInstance, now: number): void {
    const i = Number(fi.id.slice(2));
    const _pool = this.instPool[i]!;
    this.inst[i] = fi;
    this.instAlive[i] = 1;
    this.instDraining[i] = 0;
    this.instFree[i] = 0;
    this.instSpeed[i] = this.rng.host.next() < this.p.slowHostFraction ? this.p.slowHostFactor : 1;
    this.instPos[i] = this.fleet.length;
    this.instAttempts[i] = [];
    this.instBusy[i] = [];
    this.fleet.push(fi);
    this.r.instancesLaunched++;
    if (fi.market === "spot") {
      this.liveSpotVcpus += vcpusOf(fi.instanceType);
      this.r.peakSpotVcpus = Math.max(this.r.peakSpotVcpus, this.liveSpotVcpus);
      if (this.hazardPerMs > 0) {
        const life = this.rng.interrupt.exponential(1 / this.hazardPerMs);
        const withNotice = this.rng.interrupt.next() < this.p.noticeFraction;
        const at = now + life;
        if (at < this.p.horizonMs) {
          if (withNotice) this.q.push(Math.max(now, at - this.p.noticeMs), K_NOTICE, i);
          this.q.push(at, K_RECLAIM, i, withNotice ? 1 : 0);
        }
      }
    }
    this.r.peakInstances = Math.max(this.r.peakInstances, this.fleet.length);
    if (!this.reachedSize && this.fleet.length >= (this.policy.maxInstances ?? 20)) {
      this.reachedSize = true;
      this.r.rampS = now / 1000;
    }
    this.q.push(now + this.rng.boot.uniform(this.p.bootMinMs, this.p.bootMaxMs), K_READY, i);
  }

  ready(i: number, now: number): void {
    const fi = this.inst[i];
    if (this.instAlive[i] !== 1 || !fi) return;
    fi.state = "running";
    fi.lastBusyAt = now;
    if (this.instDraining[i] === 1) return;
    this.instFree[i] = this.spi;
    const stack = fi.market === "spot" ? this.freeSpot : this.freeOd;
    for (let k = 0; k < this.spi; k++) stack.push(i);
  }

  notice(i: number, now: number): void {
    const fi = this.inst[i];
    if (this.instAlive[i] !== 1 || !fi) return;
    const marked = withSpotSignal(fi, { kind: "interruption-warning", at: now });
    this.inst[i] = marked;
    this.fleet[this.instPos[i]!] = marked;
    this.instDraining[i] = 1;
    this.instFree[i] = 0;
    // The worker drains: flushes a checkpoint of the finished prefix and releases its messages.
    for (const a of [...this.instAttempts[i]!]) {
      const s = this.attShard[a]!;
      const rows = this.rowsDone(a, now);
      if (this.v.checkpoints)
        this.cursor[s] = Math.max(this.cursor[s]!, this.attStartRow[a]! + rows);
      this.interrupted(s);
      const fromStrag = this.attFromStrag[a] === 1;
      this.finishAttempt(a, now, rows);
      if (this.committed[s] === 0) this.release(s, fromStrag);
    }
  }

  reclaim(i: number, noticed: boolean, now: number): void {
    if (this.instAlive[i] !== 1) return;
    this.r.reclaims++;
    if (noticed) this.r.reclaimsWithNotice++;
    this.killAttempts(i, now);
    this.endInstance(i, now);
  }

  /** Attempts on an instance that dies unannounced: progress since the last checkpoint is lost. */
  killAttempts(i: number, now: number): void {
    for (const a of [...(this.instAttempts[i] ?? [])]) {
      const s = this.attShard[a]!;
      if (this.v.checkpoints) {
        this.cursor[s] = Math.max(
          this.cursor[s]!,
          this.attStartRow[a]! + this.rowsCheckpointed(a, now),
        );
      }
      this.interrupted(s);
      this.finishAttempt(a, now, this.rowsDone(a, now));
      // Its message reappears once its visibility timeout runs out (no heartbeat extends it).
      if (this.committed[s] === 0) this.q.push(now + this.p.visibilityTimeoutMs, K_VISIBLE, s);
    }
  }

  endInstance(i: number, now: number): void {
    const fi = this.inst[i];
    if (this.instAlive[i] !== 1 || !fi) return;
    if (this.instAttempts[i]!.length > 0) this.killAttempts(i, now);
    this.instAlive[i] = 0;
    const pos = this.instPos[i]!;
    const last = this.fleet.pop()!;
    if (last !== fi) {
      this.fleet[pos] = last;
      this.instPos[Number(last.id.slice(2))] = pos;
    }
    if (fi.market === "spot") {
      this.market.releaseSpot(this.instPool[i]!);
      this.liveSpotVcpus -= vcpusOf(fi.instanceType);
    }
    const bill = billInstance(fi.launchedAt, now, this.prices.history(fi.market, fi.instanceType));
    const busy = this.instBusy[i]!;
    const split = attributeInstance(
      { start: fi.launchedAt, billedEnd: bill.billedEnd, usd: bill.usd },
      busy,
    );
    this.r.costUsd += bill.usd;
    if (fi.market === "spot") this.r.spotUsd += bill.usd;
    else this.r.onDemandUsd += bill.usd;
    this.r.idleUsd += split.idleUsd;
    for (const b of busy) this.shardUsd[b.shard]! += split.byInterval.get(b.key) ?? 0;
    this.instBusy[i] = undefined;
    this.instAttempts[i] = [];
    this.inst[i] = undefined;
  }

  // ---- shards and attempts ------------------------------------------------------------------

  enqueue(s: number): void {
    const tail = (this.mainHead + this.mainLen) % this.n;
    this.mainQ[tail] = s;
    this.mainLen++;
  }

  release(s: number, fromStrag: boolean): void {
    if (fromStrag) this.stragQ.push(s);
    else this.enqueue(s);
  }

  interrupted(s: number): void {
    if (this.interruptions[s]! < 65_535) this.interruptions[s]!++;
    const obj = this.runObj[s];
    if (obj) obj.interruptions = this.interruptions[s]!;
  }

  /** Hands queued shards to free slots: the straggler queue to on-demand workers first. */
  dispatch(now: number): void {
    // A failed operation is over: the simulation hands none of its shards out any more.
    if (this.failed !== undefined) return;
    while (this.stragHead < this.stragQ.length && this.freeOd.length > 0) {
      const s = this.stragQ[this.stragHead]!;
      if (this.committed[s] === 1) {
        this.stragHead++;
        continue;
      }
      const i = this.takeSlot(this.freeOd);
      if (i < 0) break;
      this.stragHead++;
      this.start(s, i, now, true);
    }
    while (this.mainLen > 0 && (this.freeSpot.length > 0 || this.freeOd.length > 0)) {
      const s = this.mainQ[this.mainHead]!;
      if (this.committed[s] === 1) {
        this.mainHead = (this.mainHead + 1) % this.n;
        this.mainLen--;
        continue;
      }
      let i = this.takeSlot(this.freeSpot);
      if (i < 0) i = this.takeSlot(this.freeOd);
      if (i < 0) break;
      this.mainHead = (this.mainHead + 1) % this.n;
      this.mainLen--;
      this.start(s, i, now, false);
    }
  }

  /** Pops a free slot of a live, running, not draining instance; -1 when none. */
  takeSlot(stack: number[]): number {
    while (stack.length > 0) {
      const i = stack.pop()!;
      if (this.instAlive[i] === 1 && this.instDraining[i] === 0 && this.instFree[i]! > 0) return i;
    }
    return -1;
  }

  start(s: number, i: number, now: number, fromStrag: boolean): void {
    const a = this.attShard.length;
    const rowMs = this.p.rowMs * this.factor[s]! * this.instSpeed[i]!;
    const startRow = this.v.checkpoints ? this.cursor[s]! : 0;
    this.attShard.push(s);
    this.attInst.push(i);
    this.attStart.push(now);
    this.attRowMs.push(rowMs);
    this.attStartRow.push(startRow);
    this.attAlive.push(1);
    this.attFromStrag.push(fromStrag ? 1 : 0);
    if (Number.isNaN(this.firstStart[s]!)) this.firstStart[s] = now;
    if (this.shardAtt[2 * s] === -1) this.shardAtt[2 * s] = a;
    else this.shardAtt[2 * s + 1] = a;
    if (this.active[s]!++ === 0) {
      const obj: RunningShard = {
        shardId: String(s),
        startedAt: this.firstStart[s]!,
        interruptions: this.interruptions[s]!,
      };
      this.runObj[s] = obj;
      this.runPos[s] = this.running.length;
      this.running.push(obj);
    }
    this.instFree[i]!--;
    const fi = this.inst[i]!;
    fi.runningShards++;
    this.instAttempts[i]!.push(a);
    this.runningAttempts++;
    this.r.peakInFlightMessages = Math.max(this.r.peakInFlightMessages, this.runningAttempts);
    this.q.push(now + this.p.attemptOverheadMs + (this.rows - startRow) * rowMs, K_END, a);
  }

  /** Rows an attempt has finished by `now` (rows finish at a steady pace after the overhead). */
  rowsDone(a: number, now: number): number {
    const work = now - this.attStart[a]! - this.p.attemptOverheadMs;
    if (work <= 0) return 0;
    return Math.min(this.rows - this.attStartRow[a]!, Math.floor(work / this.attRowMs[a]!));
  }

  /** Checkpoint period of an attempt: everyRows rows or everySeconds, whichever comes first. */
  period(a: number): number {
    return Math.min(
      this.p.checkpointEveryRows * this.attRowMs[a]!,
      this.p.checkpointEverySeconds * 1000,
    );
  }

  /** Rows an attempt had checkpointed by `now`: those finished at its last checkpoint. */
  rowsCheckpointed(a: number, now: number): number {
    const work = now - this.attStart[a]! - this.p.attemptOverheadMs;
    if (work <= 0) return 0;
    const period = this.period(a);
    const at = Math.floor(work / period) * period;
    return Math.min(this.rows - this.attStartRow[a]!, Math.floor(at / this.attRowMs[a]!));
  }

  attemptEnds(a: number, now: number): void {
    if (this.attAlive[a] !== 1) return;
    const s = this.attShard[a]!;
    this.finishAttempt(a, now, this.rows - this.attStartRow[a]!);
    if (this.committed[s] === 1) return;
    this.committed[s] = 1;
    this.cursor[s] = this.rows;
    this.done++;
    this.commitsSincePlan++;
    this.addSample(now - this.firstStart[s]!);
    if (this.done === this.n) this.r.makespanS = now / 1000;
    // A straggler copy still running stops at its next checkpoint, which finds the shard committed.
    for (const other of [this.shardAtt[2 * s]!, this.shardAtt[2 * s + 1]!]) {
      if (other < 0 || this.attAlive[other] !== 1) continue;
      const work = Math.max(0, now - this.attStart[other]! - this.p.attemptOverheadMs);
      const period = this.period(other);
      const next =
        this.attStart[other]! + this.p.attemptOverheadMs + Math.ceil(work / period) * period;
      this.q.push(Math.max(now, next), K_STOP, other);
    }
  }

  finishAttempt(a: number, now: number, rows: number): void {
    this.attAlive[a] = 0;
    this.runningAttempts--;
    const s = this.attShard[a]!;
    const i = this.attInst[a]!;
    this.processed[s]! += rows;
    this.instBusy[i]?.push({
      key: String(a),
      operationId: OP,
      from: this.attStart[a]!,
      to: now,
      shard: s,
    });
    const list = this.instAttempts[i]!;
    list.splice(list.indexOf(a), 1);
    if (this.shardAtt[2 * s] === a) this.shardAtt[2 * s] = -1;
    else if (this.shardAtt[2 * s + 1] === a) this.shardAtt[2 * s + 1] = -1;
    if (--this.active[s]! === 0) {
      const pos = this.runPos[s]!;
      const last = this.running.pop()!;
      if (pos < this.running.length) {
        this.running[pos] = last;
        this.runPos[Number(last.shardId)] = pos;
      }
      this.runPos[s] = -1;
      this.runObj[s] = undefined;
    }
    const fi = this.inst[i];
    if (!fi) return;
    fi.runningShards--;
    fi.lastBusyAt = now;
    if (this.instAlive[i] === 1 && this.instDraining[i] === 0 && fi.state === "running") {
      this.instFree[i]!++;
      (fi.market === "spot" ? this.freeSpot : this.freeOd).push(i);
    }
  }

  /** Reservoir sample of committed shard durations (see the module comment). */
  addSample(ms: number): void {
    this.sampleSeen++;
    if (this.sample.length < SAMPLE) this.sample.push(ms);
    else {
      const j = Math.floor(this.rng.sample.next() * this.sampleSeen);
      if (j < SAMPLE) this.sample[j] = ms;
    }
  }

  // ---- quotas --------------------------------------------------------------------

  /**
   * S3 PUTs per second under the operation's shard prefixes, estimated per pass: each running
   * attempt writes a chunk and a checkpoint per checkpoint period; each commit a done marker,
   * its attempt record and the final chunk.
   */
  notePuts(now: number): void {
    const dt = (now - this.lastPlanAt) / 1000;
    const period =
      Math.min(this.p.checkpointEveryRows * this.p.rowMs, this.p.checkpointEverySeconds * 1000) /
      1000;
    const checkpoints = this.v.checkpoints ? (2 * this.runningAttempts) / period : 0;
    const commits = dt > 0 ? (3 * this.commitsSincePlan) / dt : 0;
    this.r.peakPutsPerSecond = Math.max(this.r.peakPutsPerSecond, checkpoints + commits);
    this.commitsSincePlan = 0;
    this.lastPlanAt = now;
  }
}
