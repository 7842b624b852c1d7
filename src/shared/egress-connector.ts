/**
 * Used by the worker's http-enrich and the scheduler's webhooks alike. An undici connector that applies the egress policy to the address it is about to connect to:
 * the host is resolved here, every address checked, and the socket opened to an allowed address
 * itself (never resolved a second time, so DNS rebinding cannot slip past the check). TLS still
 * verifies the certificate against the URL's host name (undici takes the SNI name from `host`).
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { buildConnector } from "undici";
import {
  checkEgress,
  type EgressDecision,
  type EgressPolicy,
  EgressRefusedError,
} from "./egress.ts";

/** Resolves a host name to every address it has (the system resolver by default). */
export type HostLookup = (hostname: string) => Promise<Array<{ address: string }>>;

const systemLookup: HostLookup = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export interface GuardedConnectorOptions {
  /** Connect timeout (TCP and TLS). @default 10000 */
  timeoutMs?: number;
}

/**
 * The first allowed address of `hostname`; rejects with EgressRefusedError naming the first
 * refused one when none is allowed (and with the resolver's error when it fails).
 */
export async function allowedAddress(
  policy: EgressPolicy,
  lookup: HostLookup,
  hostname: string,
  port: number,
): Promise<string> {
  const literal = isIP(hostname) !== 0;
  const addresses = literal ? [{ address: hostname }] : await lookup(hostname);
  let refused: EgressDecision | undefined;
  for (const { address } of addresses) {
    const decision = checkEgress(policy, {
      address,
      port,
      ...(literal ? {} : { hostname }),
    });
    if (decision.ok) return address;
    refused ??= decision;
  }
  const reason = refused && !refused.ok ? refused.reason : `${hostname} resolves to no address`;
  throw new EgressRefusedError(`egress refused: ${reason}`, { hostname, port });
}

/**
 * `lookup` with concurrent calls for one name sharing one resolver call: a pool opening its
 * 200 connections at once asked the resolver 200 times (getaddrinfo runs 4 at a time on
 * libuv's thread pool, so a worker's first requests waited on a queue of identical lookups).
 * Nothing is kept once the call settles: every later connection resolves afresh, and each
 * still checks the address it connects to.
 */
export function coalescedLookup(lookup: HostLookup): HostLookup {
  const pending = new Map<string, Promise<Array<{ address: string }>>>();
  return (hostname) => {
    let answer = pending.get(hostname);
    if (!answer) {
      answer = Promise.resolve()
        .then(() => lookup(hostname))
        .finally(() => pending.delete(hostname));
      pending.set(hostname, answer);
    }
    return answer;
  };
}

export function guardedConnector(
  policy: EgressPolicy,
  deps: { lookup?: HostLookup } = {},
  options: GuardedConnectorOptions = {},
): buildConnector.connector {
  const connect = buildConnector({ timeout: options.timeoutMs ?? 10_000 });
  const lookup = coalescedLookup(deps.lookup ?? systemLookup);
  return (opts, callback) => {
    const port = opts.port ? Number(opts.port) : opts.protocol === "https:" ? 443 : 80;
    allowedAddress(policy, lookup, opts.hostname, port).then(
      (address) => connect({ ...opts, hostname: address }, callback),
      (err: Error) => callback(err, null),
    );
  };
}
