/**
 * Who this instance is, from the instance metadata service (IMDSv2): its instance id and its
 * market. On EC2 the fleet manager matches attempt records to instances by id, so a worker must
 * report the real `i-…` id, not a host name.
 */
import { request } from "undici";

export interface InstanceIdentity {
  instanceId: string;
  market: "spot" | "on-demand";
}

async function text(
  url: URL,
  init: { method: "GET" | "PUT"; headers: Record<string, string> },
  timeoutMs: number,
): Promise<string | undefined> {
  const res = await request(url, {
    ...init,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = await res.body.text();
  return res.statusCode === 200 ? body.trim() : undefined;
}

/**
 * Reads the identity, or undefined when no metadata service answers within `timeoutMs`
 * (not on EC2) or it refuses (IMDS disabled on the instance).
 */
export async function readInstanceIdentity(
  endpoint: string,
  timeoutMs = 1000,
): Promise<InstanceIdentity | undefined> {
  try {
    const token = await text(
      new URL("latest/api/token", endpoint),
      { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" } },
      timeoutMs,
    );
    if (!token) return undefined;
    const get = (path: string) =>
      text(
        new URL(`latest/meta-data/${path}`, endpoint),
        { method: "GET", headers: { "x-aws-ec2-metadata-token": token } },
        timeoutMs,
      );
    const [instanceId, lifecycle] = await Promise.all([
      get("instance-id"),
      get("instance-life-cycle"),
    ]);
    if (!instanceId) return undefined;
    return { instanceId, market: lifecycle === "spot" ? "spot" : "on-demand" };
  } catch {
    return undefined;
  }
}
