/**
 * A per-instance EC2 instance metadata service (IMDSv2) for the local stack, so a local worker
 * learns of a spot interruption exactly as on EC2: PUT a session token, then GET
 * `spot/instance-action` (404 until a notice is set) with that token.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Market } from "../shared/capacity.ts";
import type { SpotAction } from "../shared/schemas/spot-events.ts";

export interface InstanceIdentity {
  instanceId: string;
  market: Market;
  instanceType?: string;
  availabilityZone?: string;
}

export interface LocalImds {
  /** The value for AWS_EC2_METADATA_SERVICE_ENDPOINT, e.g. http://127.0.0.1:PORT/ */
  readonly endpoint: string;
  /** Publishes a spot interruption notice: the instance will be stopped at `at`. */
  noticeInterruption(at: Date, action?: SpotAction): void;
  /** Publishes a rebalance recommendation (capacity at elevated risk). */
  recommendRebalance(at?: Date): void;
  /** Answers the next `count` requests with `status` (error paths; tests only). */
  failNext(status: number, count?: number): void;
  /** The requests seen, by path (tests). */
  readonly hits: Map<string, number>;
  /**
   * Resolves at the first request: the worker is up (it asks right after its first receive,
   * ../worker/worker.ts), so the local stack can tell when its instances are ready.
   */
  readonly asked: Promise<void>;
  close(): Promise<void>;
}

const TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER = "x-aws-ec2-metadata-token";

export async function startLocalImds(identity: InstanceIdentity): Promise<LocalImds> {
  const tokens = new Map<string, number>(); // token → expiry (ms)
  let notice: { action: string; time: string } | undefined;
  let rebalance: { noticeTime: string } | undefined;
  let failures: { status: number; left: number } | undefined;
  const hits = new Map<string, number>();
  let firstAsk: () => void = () => {};
  const asked = new Promise<void>((resolve) => {
    firstAsk = resolve;
  });

  const send = (res: ServerResponse, status: number, body = "", type = "text/plain") => {
    res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
    res.end(body);
  };

  const metadata = (path: string): string | undefined => {
    switch (path) {
      case "instance-id":
        return identity.instanceId;
      case "instance-life-cycle":
        return identity.market === "spot" ? "spot" : "on-demand";
      case "instance-type":
        return identity.instanceType ?? "local.small";
      case "placement/availability-zone":
        return identity.availabilityZone ?? "local-1a";
      case "spot/instance-action":
        return notice && JSON.stringify(notice);
      case "events/recommendations/rebalance":
        return rebalance && JSON.stringify(rebalance);
      default:
        return undefined;
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://imds");
    hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1);
    firstAsk();
    if (failures && failures.left > 0) {
      failures.left--;
      send(res, failures.status);
      return;
    }
    if (url.pathname === "/latest/api/token") {
      const ttl = Number(req.headers[TOKEN_TTL_HEADER]);
      if (req.method !== "PUT") return send(res, 405);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21_600) return send(res, 400);
      const token = randomBytes(24).toString("base64url");
      tokens.set(token, Date.now() + ttl * 1000);
      res.setHeader(TOKEN_TTL_HEADER, String(ttl));
      return send(res, 200, token);
    }
    if (!url.pathname.startsWith("/latest/meta-data/")) return send(res, 404);
    if (req.method !== "GET") return send(res, 405);
    const token = req.headers[TOKEN_HEADER];
    const expiry = typeof token === "string" ? tokens.get(token) : undefined;
    if (expiry === undefined || expiry < Date.now()) return send(res, 401);
    const body = metadata(url.pathname.slice("/latest/meta-data/".length));
    if (body === undefined) return send(res, 404);
    return send(res, 200, body, body.startsWith("{") ? "application/json" : "text/plain");
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}/`,
    hits,
    asked,
    noticeInterruption(at, action = "terminate") {
      notice = { action, time: at.toISOString().replace(/\.\d{3}Z$/, "Z") };
    },
    recommendRebalance(at = new Date()) {
      rebalance = { noticeTime: at.toISOString().replace(/\.\d{3}Z$/, "Z") };
    },
    failNext(status, count = 1) {
      failures = { status, left: count };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
