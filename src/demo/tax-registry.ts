/**
 * A local stand-in for a slow public web source: a "tax registry" on 127.0.0.1 that answers
 * `GET /tax/{customerId}` in 20–80 ms, fails a share of requests with 503 and knows no record
 * for some customers (404). Answers are a pure function of the id, so tests can check them.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";

export interface TaxRecord {
  customerId: string;
  taxDue: number;
  year: number;
}

function hashOf(id: string): number {
  return createHash("sha256").update(id).digest().readUInt32BE(0);
}

/** The record the registry holds for a customer, or undefined if it knows none (1 in 25). */
export function taxRecordFor(customerId: string): TaxRecord | undefined {
  const h = hashOf(customerId);
  if (h % 25 === 0) return undefined;
  return { customerId, taxDue: (h % 500_000) / 100, year: 2025 };
}

export interface TaxRegistryOptions {
  /** @default 0 (a free port) */
  port?: number;
  /** Share of requests answered 503. @default 0.03 */
  failureRate?: number;
  /** Latency range in ms. @default [20, 80] */
  latencyMs?: [number, number];
  /** Random source, injectable for tests. @default Math.random */
  random?: () => number;
}

export interface TaxRegistry {
  readonly url: string;
  readonly stats: { requests: number; failures: number; notFound: number };
  close(): Promise<void>;
}

export async function startTaxRegistry(options: TaxRegistryOptions = {}): Promise<TaxRegistry> {
  const random = options.random ?? Math.random;
  const failureRate = options.failureRate ?? 0.03;
  const [lo, hi] = options.latencyMs ?? [20, 80];
  const stats = { requests: 0, failures: 0, notFound: 0 };
  const server: Server = createServer((req, res) => {
    stats.requests++;
    const delay = lo + random() * (hi - lo);
    setTimeout(() => {
      const m = /^\/tax\/([^/?]+)$/.exec(req.url ?? "");
      if (!m || req.method !== "GET") {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: "use GET /tax/{customerId}" }));
        return;
      }
      if (random() < failureRate) {
        stats.failures++;
        res.writeHead(503, { "content-type": "application/json", "retry-after": "0" });
        res.end(JSON.stringify({ message: "registry busy, try again" }));
        return;
      }
      const record = taxRecordFor(decodeURIComponent(m[1]!));
      if (!record) {
        stats.notFound++;
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: "no record" }));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(record));
    }, delay);
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
