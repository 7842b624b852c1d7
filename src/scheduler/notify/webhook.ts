/**
 * Webhook delivery: a JSON POST signed with HMAC-SHA256 over the exact body
 * (`X-Shardfleet-Signature: sha256=<hex>`, the deployment's SHARDFLEET_NOTIFY_SECRET), retried
 * with backoff on a network error, 429 or 5xx. The connection goes only where the egress policy
 * allows, checked on the address actually connected to (as for task calls).
 */
import { createHmac } from "node:crypto";
import { Agent, request } from "undici";
import type { Clock } from "../../shared/clock.ts";
import { type EgressPolicy, EgressRefusedError, PUBLIC_ONLY } from "../../shared/egress.ts";
import { guardedConnector, type HostLookup } from "../../shared/egress-connector.ts";
import { describeError } from "../../shared/errors.ts";
import { type DeliveryOutcome, type RetryOptions, type TryOutcome, withRetries } from "./retry.ts";

export const SIGNATURE_HEADER = "x-shardfleet-signature";

/** `sha256=` + the hex HMAC-SHA256 of `body` under `secret` (what a receiver recomputes). */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

export interface WebhookSenderDeps {
  clock: Clock;
  /** Host resolution for the egress check. @default the system resolver */
  lookup?: HostLookup;
  /** @default Math.random */
  random?: () => number;
}

export interface WebhookSenderOptions extends RetryOptions {
  /** The HMAC key (SHARDFLEET_NOTIFY_SECRET). */
  secret: string;
  /** Where a webhook may connect. @default PUBLIC_ONLY */
  egress?: EgressPolicy;
  /** Per try: connect, headers and body. @default 10000 */
  timeoutMs?: number;
}

export class WebhookSender {
  readonly #deps: WebhookSenderDeps;
  readonly #options: WebhookSenderOptions;
  readonly #agent: Agent;

  constructor(deps: WebhookSenderDeps, options: WebhookSenderOptions) {
    this.#deps = deps;
    this.#options = options;
    const timeout = options.timeoutMs ?? 10_000;
    this.#agent = new Agent({
      connect: guardedConnector(
        options.egress ?? PUBLIC_ONLY,
        deps.lookup ? { lookup: deps.lookup } : {},
        { timeoutMs: timeout },
      ),
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
  }

  /** POSTs `payload` (serialized once, so the signature covers the bytes sent). */
  send(
    url: string,
    payload: { event: string; deliveryId: string },
    signal?: AbortSignal,
  ): Promise<DeliveryOutcome> {
    const body = JSON.stringify(payload);
    const headers = {
      "content-type": "application/json",
      "user-agent": "shardfleet-notify/1",
      [SIGNATURE_HEADER]: signBody(this.#options.secret, body),
      "x-shardfleet-event": payload.event,
      "x-shardfleet-delivery": payload.deliveryId,
    };
    return withRetries(
      this.#deps,
      () => this.#try(url, body, headers, signal),
      this.#options,
      signal,
    );
  }

  async #try(
    url: string,
    body: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<TryOutcome> {
    try {
      const res = await request(url, {
        method: "POST",
        body,
        headers,
        dispatcher: this.#agent,
        ...(signal ? { signal } : {}),
      });
      // The receiver's body is not ours to keep.
      await res.body.dump();
      const status = res.statusCode;
      if (status >= 200 && status < 300) return { kind: "ok" };
      const error = `webhook answered HTTP ${status}`;
      if (status === 429 || status >= 500 || status === 408) {
        const retryAfter = Number(res.headers["retry-after"]);
        return {
          kind: "retry",
          error,
          ...(Number.isFinite(retryAfter) ? { afterMs: retryAfter * 1000 } : {}),
        };
      }
      return { kind: "permanent", error };
    } catch (err) {
      if (signal?.aborted) throw err;
      // undici wraps the connector's error; the refusal is final, a network fault is not.
      const cause = (err as { cause?: unknown }).cause;
      if (err instanceof EgressRefusedError || cause instanceof EgressRefusedError) {
        return { kind: "permanent", error: describeError(cause ?? err) };
      }
      return { kind: "retry", error: `webhook unreachable: ${describeError(err)}` };
    }
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}
