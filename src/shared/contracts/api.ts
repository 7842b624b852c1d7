/**
 * The API's other bodies: errors, `GET /version`, `GET /whoami`, `GET /healthz`. The cost
 * report is served as stored: its contract is `costReportSchema` (`../schemas/cost.ts`).
 */
import { z } from "zod";
import { roles } from "../schemas/tokens.ts";

/** Every failure: `{ error: { code, message } }` (codes: `ErrorCode` in `../errors.ts`). */
export const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});
export type ErrorBodyContract = z.infer<typeof errorBodySchema>;

/** `GET /version`: the release the scheduler runs. */
export const versionSchema = z.object({ name: z.string(), version: z.string(), node: z.string() });
export type VersionInfo = z.infer<typeof versionSchema>;

/** `GET /whoami`: the caller's tenant, role and caps (never the token). */
export const whoamiSchema = z.object({
  tenant: z.string(),
  role: z.enum(roles),
  caps: z
    .object({
      maxOperations: z.number().int().optional(),
      maxInstances: z.number().int().optional(),
      maxHourlyUsd: z.number().optional(),
    })
    .describe("absent: no per-tenant cap (the fleet's own caps still hold)"),
});
export type Whoami = z.infer<typeof whoamiSchema>;

/** `GET /healthz`. */
export const healthSchema = z.object({ ok: z.boolean() });
/**
 * The `GET /healthz` response header naming the process that answered (its pid), sent to
 * loopback callers only: the local stack checks its readiness answer comes from the scheduler it
 * started, not an orphan on the same port.
 */
export const HEALTH_PID_HEADER = "x-shardfleet-pid";
