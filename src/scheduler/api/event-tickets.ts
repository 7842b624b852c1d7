/**
 * Short-lived tickets for the events stream. A browser's EventSource cannot send an
 * `Authorization` header, and the long-lived bearer token must never sit in a URL (logs,
 * history, referrers). So a caller with the token asks `POST /operations/:id/events/ticket` for a
 * ticket, and opens `GET /operations/:id/events?ticket=…`: the ticket names that one operation and
 * the caller's principal, expires after `ttlMs`, and is signed (HMAC-SHA256) with a key this
 * process draws at start, so it cannot be forged or widened, and dies with the scheduler.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { Clock } from "../../shared/clock.ts";
import { roles } from "../../shared/schemas/tokens.ts";
import type { Principal } from "./tenants.ts";

/** What a ticket carries (signed, not secret: no token in it). */
const ticketBodySchema = z.strictObject({
  op: z.string(),
  tenant: z.string(),
  role: z.enum(roles),
  key: z.string(),
  exp: z.number().int(),
});

export interface EventTicketsOptions {
  /** How long a ticket opens a stream. @default 60_000 */
  ttlMs?: number;
  /** The signing key. @default 32 random bytes (tickets die with the process) */
  secret?: Buffer;
}

export class EventTickets {
  readonly #clock: Clock;
  readonly #secret: Buffer;
  readonly ttlMs: number;

  constructor(deps: { clock: Clock }, options: EventTicketsOptions = {}) {
    this.#clock = deps.clock;
    this.#secret = options.secret ?? randomBytes(32);
    this.ttlMs = options.ttlMs ?? 60_000;
  }

  /** A ticket for `principal` to open operation `op`'s events stream, and when it expires. */
  issue(op: string, principal: Principal): { ticket: string; expiresAt: string } {
    const exp = this.#clock.now() + this.ttlMs;
    const body = Buffer.from(
      JSON.stringify({
        op,
        tenant: principal.tenant,
        role: principal.role,
        key: principal.key,
        exp,
      }),
    ).toString("base64url");
    return { ticket: `${body}.${this.#sign(body)}`, expiresAt: new Date(exp).toISOString() };
  }

  /** The principal a ticket speaks for, if it is genuine, unexpired and for `op`. */
  verify(ticket: string, op: string): Principal | undefined {
    const [body, signature, extra] = ticket.split(".");
    if (!body || !signature || extra !== undefined) return undefined;
    const expected = Buffer.from(this.#sign(body));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    let parsed: z.infer<typeof ticketBodySchema>;
    try {
      parsed = ticketBodySchema.parse(JSON.parse(Buffer.from(body, "base64url").toString("utf8")));
    } catch {
      return undefined;
    }
    if (parsed.op !== op || parsed.exp <= this.#clock.now()) return undefined;
    return { tenant: parsed.tenant, role: parsed.role, key: parsed.key };
  }

  #sign(body: string): string {
    return createHmac("sha256", this.#secret).update(body).digest("base64url");
  }
}
