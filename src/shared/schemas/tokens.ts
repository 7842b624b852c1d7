/**
 * The API tokens file (and SSM parameter): who may call the API, as which tenant and role, and
 * the tenant's caps. Plain tokens are never stored, only their SHA-256:
 *
 *   # tenant=NAME sha256=HEX [role=member|admin] [max-operations=N] [max-instances=N] [max-hourly-usd=X]
 *   tenant=acme sha256=5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
 *   tenant=ops sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 role=admin
 *
 * A line that does not start with `tenant=` is the old format: one plain token, which belongs to
 * tenant `default` (the scheduler warns about it). Several lines may name the same tenant (a
 * rotation); caps written on more than one of them must agree.
 */
import { createHash } from "node:crypto";
import { z } from "zod";

export const roles = ["member", "admin"] as const;
export type Role = (typeof roles)[number];

/** The tenant of the old one-token-a-line format, of anonymous access and of old manifests. */
export const DEFAULT_TENANT = "default";

export const tenantNameSchema = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,62}$/,
    "must be 1-63 lower-case letters, digits, - or _, starting with a letter or digit",
  );

/** Per-tenant caps; an absent cap falls back to the scheduler's SHARDFLEET_TENANT_* default. */
export const tenantCapsSchema = z.strictObject({
  /** Operations not yet finished at once; a submission over it is refused with 429. */
  maxOperations: z.number().int().min(0).optional(),
  /** Live instances launched for the tenant's operations. */
  maxInstances: z.number().int().min(0).optional(),
  /** Summed hourly price (USD) of those instances. */
  maxHourlyUsd: z.number().min(0).optional(),
});
export type TenantCaps = z.infer<typeof tenantCapsSchema>;

const count = z.coerce.number().int().min(0);

/** One `tenant=` line, as key=value pairs. */
const tokenLineSchema = z.strictObject({
  tenant: tenantNameSchema,
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, "must be the token's SHA-256 as 64 lower-case hex digits"),
  role: z.enum(roles).default("member"),
  "max-operations": count.optional(),
  "max-instances": count.optional(),
  "max-hourly-usd": z.coerce.number().min(0).optional(),
});

/** Who looks at operations: a tenant and a role. */
export interface Viewer {
  tenant: string;
  role: Role;
}

/**
 * An admin sees every tenant's operations, anyone else only their own tenant's; no viewer means
 * an internal caller (the scheduler itself), which sees all.
 */
export function canSee(viewer: Viewer | undefined, tenant: string): boolean {
  return viewer === undefined || viewer.role === "admin" || viewer.tenant === tenant;
}

/** A token the API accepts: whose it is, never the token itself. */
export interface TokenEntry {
  tenant: string;
  role: Role;
  /** SHA-256 of the token, lower-case hex. */
  sha256: string;
  /** Line in the file or parameter (for messages). */
  line: number;
  /** The caps this line names (the tenant's caps are those of all its lines). */
  caps: TenantCaps;
}

/**
 * A token as configured: an entry of the tenant format, or a plain token of the old format
 * (tenant `default`), which is hashed on load and never logged.
 */
export type ApiToken = string | TokenEntry;

export function sha256Hex(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** Thrown for a line that is not valid; `message` names the key, never a token. */
export class TokenLineError extends Error {}

/** Parses one `tenant=...` line into its entry and the caps it names. */
export function parseTokenLine(text: string, line: number): TokenEntry {
  const pairs: Record<string, string> = {};
  for (const word of text.split(/\s+/)) {
    const eq = word.indexOf("=");
    if (eq <= 0) throw new TokenLineError(`"${word.slice(0, 20)}" is not key=value`);
    const key = word.slice(0, eq);
    if (key in pairs) throw new TokenLineError(`${key} is given twice`);
    pairs[key] = word.slice(eq + 1);
  }
  const parsed = tokenLineSchema.safeParse(pairs);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.map(String).join(".");
    const message =
      issue.code === "unrecognized_keys"
        ? `unknown key ${issue.keys.join(", ")} (known: ${Object.keys(tokenLineSchema.shape).join(", ")})`
        : `${key}: ${issue.message}`;
    throw new TokenLineError(message);
  }
  const p = parsed.data;
  const caps: TenantCaps = {};
  if (p["max-operations"] !== undefined) caps.maxOperations = p["max-operations"];
  if (p["max-instances"] !== undefined) caps.maxInstances = p["max-instances"];
  if (p["max-hourly-usd"] !== undefined) caps.maxHourlyUsd = p["max-hourly-usd"];
  return { tenant: p.tenant, role: p.role, sha256: p.sha256, line, caps };
}

/** Merges caps a line names into the tenant's; a cap given twice must agree. */
export function mergeCaps(into: TenantCaps, more: TenantCaps): TenantCaps {
  const merged: TenantCaps = { ...into };
  for (const key of Object.keys(more) as (keyof TenantCaps)[]) {
    const value = more[key];
    if (merged[key] !== undefined && merged[key] !== value) {
      throw new TokenLineError(
        `${key} ${value} contradicts ${merged[key]} on an earlier line of the same tenant`,
      );
    }
    merged[key] = value;
  }
  return merged;
}

/** The line a token is stored as: what `shardfleet token create` prints. */
export function tokenLine(entry: { tenant: string; role: Role; token: string }): string {
  const role = entry.role === "member" ? "" : ` role=${entry.role}`;
  return `tenant=${entry.tenant} sha256=${sha256Hex(entry.token)}${role}`;
}
