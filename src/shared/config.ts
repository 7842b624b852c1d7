/**
 * Configuration, parsed once from the environment into a frozen, typed object.
 *
 * Every shardfleet setting is a `SHARDFLEET_*` variable. An unknown `SHARDFLEET_*` variable is
 * an error (a typo must not silently fall back to a default), and so is an invalid value; the
 * error names the variable. AWS endpoints and region use the standard AWS variables.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { type EgressPolicy, parseEgressAllow } from "./egress.ts";
import { ConfigError } from "./errors.ts";
import { NOTIFY_EVENTS, type NotifyEvent } from "./schemas/notify.ts";
import {
  type ApiToken,
  mergeCaps,
  parseTokenLine,
  type TenantCaps,
  TokenLineError,
} from "./schemas/tokens.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const MIB = 1024 * 1024;

/** What an input workbook may cost before any work is queued (intake and splitter). */
export interface WorkbookLimits {
  /** Largest inflated sheet (streamed, never held or spooled). @default 1 GiB */
  maxSheetBytes: number;
  /**
   * Largest inflated other part read: shared strings (held in memory), styles, workbook.
   * @default 256 MiB
   */
  maxPartBytes: number;
  /** Largest inflated/compressed ratio of a part over 1 MiB. @default 200 */
  maxCompressionRatio: number;
  /** Most entries in the zip. @default 10,000 */
  maxEntries: number;
  /** Most data rows (the output's header takes one more row). @default 1,048,575 */
  maxRows: number;
}

/**
 * The workbook limits when nothing is set: the SHARDFLEET_MAX_* defaults below and the default
 * of every caller that takes limits (one definition, so the two cannot drift).
 */
export const DEFAULT_WORKBOOK_LIMITS: Readonly<WorkbookLimits> = Object.freeze({
  maxSheetBytes: 1024 * MIB,
  maxPartBytes: 256 * MIB,
  maxCompressionRatio: 200,
  maxEntries: 10_000,
  // Excel's last row less the header: the output workbook must hold every row.
  maxRows: 1_048_575,
});

/** The API's limits when nothing is set: the SHARDFLEET_API_* defaults below and buildApp's. */
export const DEFAULT_API_LIMITS: ApiLimits = Object.freeze({
  headersTimeoutMs: 20_000,
  socketIdleTimeoutMs: 60_000,
  minUploadBytesPerSecond: 1024,
  uploadRateWindowMs: 10_000,
  rateLimitPerMinute: 600,
  failedAuthPerMinute: 30,
  trustedProxies: 0,
});

/**
 * The fleet manager's launch calls at once unless configured (SHARDFLEET_LAUNCH_CONCURRENCY). A
 * CreateFleet call takes about a second, so 5 at once stays near EC2's sustained CreateFleet
 * request rate; a throttled call (RequestLimitExceeded) is retried with the same client token.
 */
export const DEFAULT_LAUNCH_CONCURRENCY = 5;

/** Timeouts on every AWS SDK client's sockets (src/shared/aws.ts). */
export interface AwsTimeouts {
  /** A TCP (and TLS) connect that takes longer fails the attempt. */
  readonly connectMs: number;
  /**
   * A socket silent this long within a call (no byte sent or received) fails the attempt with a
   * retryable TimeoutError. Longer than the longest SQS long-poll wait (20 s).
   */
  readonly idleMs: number;
}

/** The SDK timeouts when nothing is set: the SHARDFLEET_AWS_* defaults and createAwsClients'. */
export const DEFAULT_AWS_TIMEOUTS: AwsTimeouts = Object.freeze({
  connectMs: 10_000,
  idleMs: 60_000,
});

/** The longest SQS long-poll wait: the server is silent that long on an empty queue. */
const SQS_MAX_WAIT_S = 20;

const W = DEFAULT_WORKBOOK_LIMITS;
const A = DEFAULT_API_LIMITS;

/** Each known variable, its schema and default. The keys are the full variable names. */
const settings = {
  SHARDFLEET_BUCKET: z.string().min(3).default("shardfleet-local"),
  SHARDFLEET_WORK_QUEUE_URL: z.url().optional(),
  SHARDFLEET_STRAGGLER_QUEUE_URL: z.url().optional(),
  SHARDFLEET_DLQ_URL: z.url().optional(),
  // EventBridge spot interruption warnings / rebalance recommendations (scheduler only).
  SHARDFLEET_SPOT_EVENTS_QUEUE_URL: z.url().optional(),
  SHARDFLEET_LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info"),
  SHARDFLEET_LOG_PRETTY: bool.default(false),
  SHARDFLEET_API_HOST: z.string().default("127.0.0.1"),
  SHARDFLEET_API_PORT: int(0, 65535).default(8080),
  SHARDFLEET_MAX_UPLOAD_MB: int(1, 10_240).default(512),
  // Workbook limits (scheduler: intake and splitter), checked before anything is inflated.
  SHARDFLEET_MAX_INFLATED_MB: int(1, 65_536).default(W.maxSheetBytes / MIB),
  SHARDFLEET_MAX_SHARED_STRINGS_MB: int(1, 16_384).default(W.maxPartBytes / MIB),
  SHARDFLEET_MAX_COMPRESSION_RATIO: z.coerce
    .number()
    .min(2)
    .max(100_000)
    .default(W.maxCompressionRatio),
  SHARDFLEET_MAX_ZIP_ENTRIES: int(1, 1_000_000).default(W.maxEntries),
  // The default is also the most: Excel's last row less the header.
  SHARDFLEET_MAX_ROWS: int(1, W.maxRows).default(W.maxRows),
  // The API's bearer tokens (scheduler), from one of these two; neither: no authentication.
  SHARDFLEET_API_TOKENS_FILE: z.string().min(1).optional(),
  SHARDFLEET_API_TOKEN_SSM_PARAMETER: z
    .string()
    .regex(/^[A-Za-z0-9_.\-/:]{1,2048}$/, "must be an SSM parameter name (or ARN)")
    .optional(),
  // Without tokens the API refuses to listen beyond loopback unless this says so.
  SHARDFLEET_API_ALLOW_ANONYMOUS: bool.default(false),
  // HTTP hardening (scheduler API).
  SHARDFLEET_API_HEADERS_TIMEOUT_S: z.coerce
    .number()
    .min(1)
    .max(600)
    .default(A.headersTimeoutMs / 1000),
  SHARDFLEET_API_SOCKET_IDLE_TIMEOUT_S: z.coerce
    .number()
    .min(1)
    .max(3600)
    .default(A.socketIdleTimeoutMs / 1000),
  SHARDFLEET_API_MIN_UPLOAD_BYTES_PER_S: int(0, 1 << 30).default(A.minUploadBytesPerSecond),
  SHARDFLEET_API_UPLOAD_RATE_WINDOW_S: z.coerce
    .number()
    .min(0.1)
    .max(600)
    .default(A.uploadRateWindowMs / 1000),
  SHARDFLEET_API_RATE_LIMIT_PER_MIN: int(0, 1_000_000).default(A.rateLimitPerMinute),
  SHARDFLEET_API_FAILED_AUTH_PER_MIN: int(0, 1_000_000).default(A.failedAuthPerMinute),
  SHARDFLEET_API_TRUSTED_PROXIES: int(0, 10).default(A.trustedProxies),
  // Per-tenant caps, for tenants whose token lines name none.
  SHARDFLEET_TENANT_MAX_OPERATIONS: int(0, 100_000).default(10),
  SHARDFLEET_TENANT_MAX_INSTANCES: int(0, 10_000).optional(),
  SHARDFLEET_TENANT_MAX_HOURLY_USD: z.coerce.number().min(0).optional(),
  // The fleet manager (scheduler). Policy defaults mirror resolveFleetPolicy's.
  SHARDFLEET_CAPACITY: z.enum(["none", "local", "ec2"]).default("none"),
  SHARDFLEET_LOCAL_EC2_URL: z.url().optional(),
  SHARDFLEET_MAX_INSTANCES: int(0, 10_000).default(20),
  SHARDFLEET_MAX_HOURLY_USD: z.coerce.number().min(0).optional(),
  SHARDFLEET_IDLE_TIMEOUT_S: z.coerce.number().min(0).max(86_400).default(180),
  // Unset: the capacity's own (local 120 s, ec2 600 s).
  SHARDFLEET_BOOT_DEADLINE_S: z.coerce.number().min(1).max(86_400).optional(),
  SHARDFLEET_CAPACITY_DEADLINE_S: z.coerce.number().min(0).max(86_400).default(300),
  SHARDFLEET_STRAGGLER_MIN_S: z.coerce.number().min(0).max(86_400).default(60),
  SHARDFLEET_FLEET_INTERVAL_S: z.coerce.number().min(0.05).max(300).default(5),
  SHARDFLEET_LAUNCH_CONCURRENCY: int(1, 50).default(DEFAULT_LAUNCH_CONCURRENCY),
  // The scheduler lease: one active scheduler per bucket; renewed every third of it.
  SHARDFLEET_LEASE_S: z.coerce.number().min(1).max(3600).default(30),
  // Fair share: the work queue's bounded backlog (src/scheduler/dispatch/).
  SHARDFLEET_DISPATCH_MIN_QUEUED: int(1, 100_000).default(10),
  SHARDFLEET_DISPATCH_QUEUED_PER_RUNNING: z.coerce.number().min(0).max(100).default(1),
  SHARDFLEET_DISPATCH_DRAIN_S: z.coerce.number().min(0).max(60).default(1),
  // The self-healing sweep: how often it looks for shards whose message was lost.
  SHARDFLEET_SWEEP_INTERVAL_S: z.coerce.number().min(0.05).max(3600).default(15),
  SHARDFLEET_EC2_LAUNCH_TEMPLATE: z.string().min(1).optional(),
  SHARDFLEET_EC2_SUBNETS: z.string().optional(),
  SHARDFLEET_EC2_INSTANCE_TYPES: z.string().default("c7g.large,c6g.large,m7g.large"),
  SHARDFLEET_PRICE_TABLE: z.string().min(1).optional(),
  SHARDFLEET_INSTANCE_ID: z.string().min(1).optional(),
  SHARDFLEET_MARKET: z.enum(["spot", "on-demand"]).default("on-demand"),
  SHARDFLEET_PLUGIN_DIR: z.string().default(path.join(repoRoot, "plugins")),
  SHARDFLEET_VISIBILITY_TIMEOUT_S: int(5, 43_200).default(60),
  SHARDFLEET_POLL_WAIT_S: int(0, 20).default(20),
  // Timeouts on every AWS SDK call's socket (src/shared/aws.ts).
  SHARDFLEET_AWS_CONNECT_TIMEOUT_S: z.coerce
    .number()
    .min(0.1)
    .max(300)
    .default(DEFAULT_AWS_TIMEOUTS.connectMs / 1000),
  SHARDFLEET_AWS_IDLE_TIMEOUT_S: z.coerce
    .number()
    .min(
      SQS_MAX_WAIT_S + 5,
      `must exceed SQS's longest long-poll wait (${SQS_MAX_WAIT_S} s) by 5 s at least`,
    )
    .max(3600)
    .default(DEFAULT_AWS_TIMEOUTS.idleMs / 1000),
  SHARDFLEET_SHARDS_IN_FLIGHT: int(1, 64).default(2),
  SHARDFLEET_INTERRUPTION_POLL_S: z.coerce.number().min(0.05).max(300).default(5),
  SHARDFLEET_DRAIN_ON_REBALANCE: bool.default(false),
  SHARDFLEET_DRAIN_GRACE_S: z.coerce.number().min(0).max(100).default(2),
  // Non-public addresses tasks may call (worker at connect time, scheduler at intake).
  SHARDFLEET_EGRESS_ALLOW: z.string().optional(),
  // Notifications (scheduler): deployment defaults, the webhook HMAC secret, the email transport.
  SHARDFLEET_NOTIFY_SECRET: z.string().min(16, "must be at least 16 characters").optional(),
  SHARDFLEET_NOTIFY_WEBHOOK: z.url({ protocol: /^https?$/ }).optional(),
  SHARDFLEET_NOTIFY_EMAIL: z.string().optional(),
  SHARDFLEET_NOTIFY_ON: z.string().optional(),
  SHARDFLEET_NOTIFY_INTERVAL_S: z.coerce.number().min(0.05).max(300).default(2),
  SHARDFLEET_EMAIL_TRANSPORT: z.enum(["none", "smtp", "ses"]).default("none"),
  SHARDFLEET_SMTP_URL: z.url({ protocol: /^smtps?$/ }).optional(),
  SHARDFLEET_EMAIL_FROM: z.email().optional(),
  SHARDFLEET_PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional(),
} as const;

/**
 * Every `SHARDFLEET_*` variable a component reads, with its schema (and so its default): the
 * README's configuration table has a row for each (test/docs/readme.test.ts checks it).
 */
export const CONFIG_SETTINGS: Readonly<Record<string, z.ZodType>> = settings;

/** Variables that belong to tools around the product (tests, benchmarks), not to its config. */
const NOT_CONFIG = new Set([
  "SHARDFLEET_API_URL",
  "SHARDFLEET_API_TOKEN",
  "SHARDFLEET_CONTRACT_TARGET",
  "SHARDFLEET_CONTRACT_BUCKET",
]);

const envSchema = z.object(settings);

export interface Config {
  readonly bucket: string;
  readonly queues: {
    readonly work?: string;
    readonly straggler?: string;
    readonly dlq?: string;
    /**
     * Where an EventBridge rule delivers EC2 spot interruption warnings and rebalance
     * recommendations; the scheduler's fleet manager consumes it.
     */
    readonly spotEvents?: string;
  };
  readonly log: { readonly level: string; readonly pretty: boolean };
  readonly api: {
    readonly host: string;
    readonly port: number;
    readonly maxUploadBytes: number;
    readonly auth: ApiAuth;
    /** Serve without tokens beyond loopback (warned loudly). */
    readonly allowAnonymous: boolean;
    readonly limits: ApiLimits;
    /** Caps of a tenant whose token lines name none. */
    readonly tenantDefaults: TenantCaps;
  };
  /** What an input workbook may cost before any work is queued (intake and splitter). */
  readonly workbook: Readonly<WorkbookLimits>;
  /** The fleet manager: who provides instances and the policy's caps. */
  readonly fleet: {
    /** `none`: instances are someone else's (static local stack); `local`; `ec2`. */
    readonly capacity: "none" | "local" | "ec2";
    readonly localEc2Url?: string;
    readonly maxInstances: number;
    readonly maxHourlyUsd?: number;
    /** A JSON price table file overriding the shipped on-demand prices (cost reports). */
    readonly priceTableFile?: string;
    readonly idleTimeoutSeconds: number;
    /**
     * An instance whose worker has not reported up this long after launch is terminated.
     * Undefined: the capacity's own default.
     */
    readonly bootDeadlineSeconds?: number;
    readonly capacityDeadlineSeconds: number;
    readonly stragglerMinSeconds: number;
    /** Pause between fleet manager passes. */
    readonly intervalSeconds: number;
    /** CreateFleet calls of one plan carried out at once (default DEFAULT_LAUNCH_CONCURRENCY). */
    readonly launchConcurrency: number;
    readonly ec2: {
      /** Launch template id (`lt-…`) or name. */
      readonly launchTemplate?: string;
      /** `subnet-id` or `subnet-id:availability-zone`, in preference order. */
      readonly subnets: readonly { subnetId: string; availabilityZone?: string }[];
      readonly instanceTypes: readonly string[];
    };
  };
  readonly worker: {
    readonly instanceId: string;
    readonly market: "spot" | "on-demand";
    readonly pluginDir: string;
    readonly visibilityTimeoutSeconds: number;
    readonly pollWaitSeconds: number;
    readonly shardsInFlight: number;
    /** How often the spot interruption watcher polls the instance metadata service. */
    readonly interruptionPollSeconds: number;
    /** Drain on an EC2 rebalance recommendation too, not only on an interruption notice. */
    readonly drainOnRebalance: boolean;
    /** On a notice or SIGTERM: how long in-flight rows may run before the final checkpoint. */
    readonly drainGraceSeconds: number;
  };
  /** Where a task's outbound calls may go besides public addresses (SHARDFLEET_EGRESS_ALLOW). */
  readonly egress: EgressPolicy;
  /** The scheduler lease (one active scheduler per bucket). */
  readonly lease: {
    /** How long the lease lasts without a renewal; a standby takes over after it. */
    readonly seconds: number;
  };
  /** Fair share: how many shards the work queue may hold (the dispatcher's bounded backlog). */
  readonly dispatch: {
    /** Shards it may always hold. */
    readonly minQueued: number;
    /** Shards it may hold per shard running, when that is more. */
    readonly queuedPerRunning: number;
    /** Seconds of what workers take (their recent rate) it may hold, when that is more. */
    readonly drainSeconds: number;
  };
  /** The self-healing sweep (src/scheduler/sweep/): re-drives shards whose message was lost. */
  readonly sweep: {
    /** Pause between sweep passes. */
    readonly intervalSeconds: number;
  };
  readonly notify: NotifyConfig;
  /** Timeouts on every AWS SDK client's sockets. */
  readonly aws: AwsTimeouts;
}

/** Notifications (see src/scheduler/notify/). */
export interface NotifyConfig {
  /** The webhook HMAC key; without it webhooks are off (a spec naming one is refused). */
  readonly secret?: string;
  /** The deployment's own subscription, sent for every operation. */
  readonly defaults: {
    readonly webhook?: string;
    readonly email: readonly string[];
    readonly on?: readonly NotifyEvent[];
  };
  readonly email: EmailTransportConfig;
  /** The scheduler's public base URL, for links in notifications. */
  readonly publicUrl?: string;
  readonly intervalSeconds: number;
}

export type EmailTransportConfig =
  | { readonly kind: "none" }
  | { readonly kind: "smtp"; readonly url: string; readonly from: string }
  | { readonly kind: "ses"; readonly from: string };

/** The API's connection and request limits (HTTP hardening). */
export interface ApiLimits {
  /** Time a client has to send the request headers. */
  readonly headersTimeoutMs: number;
  /** A socket silent this long within a request is closed. */
  readonly socketIdleTimeoutMs: number;
  /** An upload slower than this, averaged over `uploadRateWindowMs`, is cut off (408). 0: off. */
  readonly minUploadBytesPerSecond: number;
  readonly uploadRateWindowMs: number;
  /** Requests a token (or, without tokens, an address) may make per minute. 0: no limit. */
  readonly rateLimitPerMinute: number;
  /** Refused (401) requests an address may make per minute, then 429. 0: no limit. */
  readonly failedAuthPerMinute: number;
  /**
   * Proxies in front of the API (the load balancer: 1) whose X-Forwarded-For names the client
   * address that per-address limits count by. 0: the socket's peer is the client.
   */
  readonly trustedProxies: number;
}

/**
 * Where the API's bearer tokens come from. `none`: the API is unauthenticated. A tokens file is
 * read here, at load; an SSM parameter is read by the scheduler at start (it needs a client).
 */
export type ApiAuth =
  | { readonly source: "none" }
  | { readonly source: "file"; readonly tokens: readonly ApiToken[] }
  | { readonly source: "ssm"; readonly parameter: string };

/** Shorter tokens are refused: `openssl rand -hex 32` gives 64 characters. */
export const MIN_API_TOKEN_LENGTH = 32;
/** RFC 6750's b64token: what may follow `Bearer ` in an Authorization header. */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The tokens in a tokens file or parameter, one a line; blank lines and `#` comments are
 * skipped. A `tenant=` line is a tenant token (its hash, role and caps: see
 * ./schemas/tokens.ts); any other line is an old-format plain token (tenant `default`). Throws a
 * ConfigError naming `setting` (and the line, never the token) for a line that is invalid, a
 * plain token that is short or not sendable in a header, or when there is none at all.
 */
export function parseApiTokens(text: string, setting: string): ApiToken[] {
  const tokens: ApiToken[] = [];
  const caps = new Map<string, TenantCaps>();
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("tenant=")) {
      try {
        const entry = parseTokenLine(line, index + 1);
        caps.set(entry.tenant, mergeCaps(caps.get(entry.tenant) ?? {}, entry.caps));
        tokens.push(entry);
      } catch (err) {
        if (!(err instanceof TokenLineError)) throw err;
        throw new ConfigError(`${setting}: line ${index + 1}: ${err.message}`, {
          details: { setting, line: index + 1 },
        });
      }
      continue;
    }
    const where = `${setting}: the token on line ${index + 1}`;
    if (!BEARER_TOKEN.test(line)) {
      throw new ConfigError(
        `${where} is not a bearer token (letters, digits and -._~+/ only, = at the end)`,
        { details: { setting } },
      );
    }
    if (line.length < MIN_API_TOKEN_LENGTH) {
      throw new ConfigError(
        `${where} has ${line.length} characters; at least ${MIN_API_TOKEN_LENGTH} are needed (openssl rand -hex 32)`,
        { details: { setting } },
      );
    }
    tokens.push(line);
  }
  if (tokens.length === 0) {
    throw new ConfigError(`${setting}: no token found (one a line, # starts a comment)`, {
      details: { setting },
    });
  }
  return tokens;
}

function apiAuth(file: string | undefined, parameter: string | undefined): ApiAuth {
  if (file !== undefined && parameter !== undefined) {
    throw new ConfigError(
      "SHARDFLEET_API_TOKENS_FILE and SHARDFLEET_API_TOKEN_SSM_PARAMETER exclude each other: set one",
      { details: { setting: "SHARDFLEET_API_TOKEN_SSM_PARAMETER" } },
    );
  }
  if (parameter !== undefined) return { source: "ssm", parameter };
  if (file === undefined) return { source: "none" };
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(
      `cannot read SHARDFLEET_API_TOKENS_FILE=${JSON.stringify(file)}: ${(err as Error).message}`,
      { details: { setting: "SHARDFLEET_API_TOKENS_FILE" }, cause: err },
    );
  }
  return { source: "file", tokens: parseApiTokens(text, "SHARDFLEET_API_TOKENS_FILE") };
}

function egressPolicy(text: string | undefined): EgressPolicy {
  try {
    return parseEgressAllow(text);
  } catch (err) {
    throw new ConfigError(`invalid setting SHARDFLEET_EGRESS_ALLOW: ${(err as Error).message}`, {
      details: { setting: "SHARDFLEET_EGRESS_ALLOW" },
    });
  }
}

function notifyConfig(e: z.infer<typeof envSchema>): NotifyConfig {
  const bad = (setting: string, message: string) =>
    new ConfigError(`invalid setting ${setting}: ${message}`, { details: { setting } });
  const email = commaList(e.SHARDFLEET_NOTIFY_EMAIL);
  for (const address of email) {
    if (!z.email().safeParse(address).success) {
      throw bad("SHARDFLEET_NOTIFY_EMAIL", `${JSON.stringify(address)} is not an email address`);
    }
  }
  let on: NotifyEvent[] | undefined;
  if (e.SHARDFLEET_NOTIFY_ON !== undefined) {
    on = commaList(e.SHARDFLEET_NOTIFY_ON).map((name) => {
      const event = NOTIFY_EVENTS.find((v) => v === name);
      if (!event) {
        throw bad(
          "SHARDFLEET_NOTIFY_ON",
          `unknown event ${JSON.stringify(name)} (known: ${NOTIFY_EVENTS.join(", ")})`,
        );
      }
      return event;
    });
  }
  const from = e.SHARDFLEET_EMAIL_FROM;
  let transport: EmailTransportConfig;
  switch (e.SHARDFLEET_EMAIL_TRANSPORT) {
    case "none":
      transport = { kind: "none" };
      break;
    case "smtp":
      if (!e.SHARDFLEET_SMTP_URL) {
        throw bad(
          "SHARDFLEET_SMTP_URL",
          "SHARDFLEET_EMAIL_TRANSPORT=smtp needs it (smtp://host:port)",
        );
      }
      if (!from) throw bad("SHARDFLEET_EMAIL_FROM", "an email transport needs a From address");
      transport = { kind: "smtp", url: e.SHARDFLEET_SMTP_URL, from };
      break;
    case "ses":
      if (!from) throw bad("SHARDFLEET_EMAIL_FROM", "an email transport needs a From address");
      transport = { kind: "ses", from };
      break;
  }
  if (e.SHARDFLEET_NOTIFY_WEBHOOK && !e.SHARDFLEET_NOTIFY_SECRET) {
    throw bad(
      "SHARDFLEET_NOTIFY_SECRET",
      "SHARDFLEET_NOTIFY_WEBHOOK needs it (webhooks are signed)",
    );
  }
  if (email.length > 0 && transport.kind === "none") {
    throw bad("SHARDFLEET_EMAIL_TRANSPORT", "SHARDFLEET_NOTIFY_EMAIL needs smtp or ses");
  }
  return {
    ...(e.SHARDFLEET_NOTIFY_SECRET ? { secret: e.SHARDFLEET_NOTIFY_SECRET } : {}),
    defaults: {
      ...(e.SHARDFLEET_NOTIFY_WEBHOOK ? { webhook: e.SHARDFLEET_NOTIFY_WEBHOOK } : {}),
      email,
      ...(on ? { on } : {}),
    },
    email: transport,
    ...(e.SHARDFLEET_PUBLIC_URL ? { publicUrl: e.SHARDFLEET_PUBLIC_URL } : {}),
    intervalSeconds: e.SHARDFLEET_NOTIFY_INTERVAL_S,
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** "a, b,,c" → ["a", "b", "c"]. */
function commaList(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean);
}

/** Parses the environment. Throws a ConfigError naming the first bad or unknown variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  for (const name of Object.keys(env)) {
    if (name.startsWith("SHARDFLEET_") && !(name in settings) && !NOT_CONFIG.has(name)) {
      throw new ConfigError(
        `unknown setting ${name} (known: ${Object.keys(settings).join(", ")})`,
        { details: { setting: name } },
      );
    }
  }
  const present = Object.fromEntries(
    Object.keys(settings)
      .filter((k) => env[k] !== undefined && env[k] !== "")
      .map((k) => [k, env[k]]),
  );
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? "?");
    throw new ConfigError(
      `invalid setting ${name}=${JSON.stringify(env[name])}: ${issue?.message}`,
      {
        details: { setting: name },
      },
    );
  }
  const e = parsed.data;
  return deepFreeze({
    bucket: e.SHARDFLEET_BUCKET,
    queues: {
      work: e.SHARDFLEET_WORK_QUEUE_URL,
      straggler: e.SHARDFLEET_STRAGGLER_QUEUE_URL,
      dlq: e.SHARDFLEET_DLQ_URL,
      spotEvents: e.SHARDFLEET_SPOT_EVENTS_QUEUE_URL,
    },
    log: { level: e.SHARDFLEET_LOG_LEVEL, pretty: e.SHARDFLEET_LOG_PRETTY },
    api: {
      host: e.SHARDFLEET_API_HOST,
      port: e.SHARDFLEET_API_PORT,
      maxUploadBytes: e.SHARDFLEET_MAX_UPLOAD_MB * 1024 * 1024,
      auth: apiAuth(e.SHARDFLEET_API_TOKENS_FILE, e.SHARDFLEET_API_TOKEN_SSM_PARAMETER),
      allowAnonymous: e.SHARDFLEET_API_ALLOW_ANONYMOUS,
      limits: {
        headersTimeoutMs: Math.round(e.SHARDFLEET_API_HEADERS_TIMEOUT_S * 1000),
        socketIdleTimeoutMs: Math.round(e.SHARDFLEET_API_SOCKET_IDLE_TIMEOUT_S * 1000),
        minUploadBytesPerSecond: e.SHARDFLEET_API_MIN_UPLOAD_BYTES_PER_S,
        uploadRateWindowMs: Math.round(e.SHARDFLEET_API_UPLOAD_RATE_WINDOW_S * 1000),
        rateLimitPerMinute: e.SHARDFLEET_API_RATE_LIMIT_PER_MIN,
        failedAuthPerMinute: e.SHARDFLEET_API_FAILED_AUTH_PER_MIN,
        trustedProxies: e.SHARDFLEET_API_TRUSTED_PROXIES,
      },
      tenantDefaults: {
        maxOperations: e.SHARDFLEET_TENANT_MAX_OPERATIONS,
        ...(e.SHARDFLEET_TENANT_MAX_INSTANCES !== undefined
          ? { maxInstances: e.SHARDFLEET_TENANT_MAX_INSTANCES }
          : {}),
        ...(e.SHARDFLEET_TENANT_MAX_HOURLY_USD !== undefined
          ? { maxHourlyUsd: e.SHARDFLEET_TENANT_MAX_HOURLY_USD }
          : {}),
      },
    },
    workbook: {
      maxSheetBytes: e.SHARDFLEET_MAX_INFLATED_MB * MIB,
      maxPartBytes: e.SHARDFLEET_MAX_SHARED_STRINGS_MB * MIB,
      maxCompressionRatio: e.SHARDFLEET_MAX_COMPRESSION_RATIO,
      maxEntries: e.SHARDFLEET_MAX_ZIP_ENTRIES,
      maxRows: e.SHARDFLEET_MAX_ROWS,
    },
    fleet: {
      capacity: e.SHARDFLEET_CAPACITY,
      localEc2Url: e.SHARDFLEET_LOCAL_EC2_URL,
      maxInstances: e.SHARDFLEET_MAX_INSTANCES,
      maxHourlyUsd: e.SHARDFLEET_MAX_HOURLY_USD,
      priceTableFile: e.SHARDFLEET_PRICE_TABLE,
      idleTimeoutSeconds: e.SHARDFLEET_IDLE_TIMEOUT_S,
      bootDeadlineSeconds: e.SHARDFLEET_BOOT_DEADLINE_S,
      capacityDeadlineSeconds: e.SHARDFLEET_CAPACITY_DEADLINE_S,
      stragglerMinSeconds: e.SHARDFLEET_STRAGGLER_MIN_S,
      intervalSeconds: e.SHARDFLEET_FLEET_INTERVAL_S,
      launchConcurrency: e.SHARDFLEET_LAUNCH_CONCURRENCY,
      ec2: {
        launchTemplate: e.SHARDFLEET_EC2_LAUNCH_TEMPLATE,
        subnets: commaList(e.SHARDFLEET_EC2_SUBNETS).map((s) => {
          const [subnetId = s, availabilityZone] = s.split(":");
          return availabilityZone ? { subnetId, availabilityZone } : { subnetId };
        }),
        instanceTypes: commaList(e.SHARDFLEET_EC2_INSTANCE_TYPES),
      },
    },
    worker: {
      instanceId: e.SHARDFLEET_INSTANCE_ID ?? `${hostname()}-${process.pid}`,
      market: e.SHARDFLEET_MARKET,
      pluginDir: e.SHARDFLEET_PLUGIN_DIR,
      visibilityTimeoutSeconds: e.SHARDFLEET_VISIBILITY_TIMEOUT_S,
      pollWaitSeconds: e.SHARDFLEET_POLL_WAIT_S,
      shardsInFlight: e.SHARDFLEET_SHARDS_IN_FLIGHT,
      interruptionPollSeconds: e.SHARDFLEET_INTERRUPTION_POLL_S,
      drainOnRebalance: e.SHARDFLEET_DRAIN_ON_REBALANCE,
      drainGraceSeconds: e.SHARDFLEET_DRAIN_GRACE_S,
    },
    egress: egressPolicy(e.SHARDFLEET_EGRESS_ALLOW),
    lease: { seconds: e.SHARDFLEET_LEASE_S },
    dispatch: {
      minQueued: e.SHARDFLEET_DISPATCH_MIN_QUEUED,
      queuedPerRunning: e.SHARDFLEET_DISPATCH_QUEUED_PER_RUNNING,
      drainSeconds: e.SHARDFLEET_DISPATCH_DRAIN_S,
    },
    sweep: { intervalSeconds: e.SHARDFLEET_SWEEP_INTERVAL_S },
    notify: notifyConfig(e),
    aws: {
      connectMs: Math.round(e.SHARDFLEET_AWS_CONNECT_TIMEOUT_S * 1000),
      idleMs: Math.round(e.SHARDFLEET_AWS_IDLE_TIMEOUT_S * 1000),
    },
  });
}

/** Returns the queue URL or throws a ConfigError naming the variable that should hold it. */
export function requireQueue(config: Config, which: keyof Config["queues"]): string {
  const url = config.queues[which];
  if (!url) {
    const name = {
      work: "SHARDFLEET_WORK_QUEUE_URL",
      straggler: "SHARDFLEET_STRAGGLER_QUEUE_URL",
      dlq: "SHARDFLEET_DLQ_URL",
      spotEvents: "SHARDFLEET_SPOT_EVENTS_QUEUE_URL",
    }[which];
    throw new ConfigError(`missing setting ${name}`, { details: { setting: name } });
  }
  return url;
}
