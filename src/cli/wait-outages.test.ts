/**
 * `waitForOperation` through a scheduler restart and transient errors, against a real HTTP
 * server that goes away and comes back on the same port.
 */
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { operationView } from "../../test/support/views.ts";
import { ApiClient, type OperationView } from "./api-client.ts";
import { EXIT } from "./cli-error.ts";
import { waitForOperation } from "./wait.ts";

const view = (status: OperationView["status"]): OperationView =>
  operationView({ status, rows: { total: 4, done: status === "succeeded" ? 4 : 1, failed: 0 } });

type Answer = { status: number; body: unknown };

/** Serves every request (the CLI asks only `GET /operations/op-1`) with the next scripted answer (the last one repeats). */
async function api(port: number, script: Answer[]): Promise<Server> {
  const server = createServer((_req, res) => {
    const next = script.length > 1 ? script.shift()! : script[0]!;
    res.writeHead(next.status, { "content-type": "application/json" });
    res.end(JSON.stringify(next.body));
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return server;
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function collect() {
  const lines: string[] = [];
  return { lines, write: (l: string) => lines.push(l) };
}

describe("waitForOperation through outages", () => {
  it("waits through a 500 and a scheduler that is gone for a while, then reports the outcome", async () => {
    const first = await api(0, [
      { status: 200, body: view("running") },
      { status: 500, body: { error: { code: "INTERNAL", message: "boom" } } },
    ]);
    const port = (first.address() as AddressInfo).port;
    const client = new ApiClient(`http://127.0.0.1:${port}`);
    const notices = collect();
    const waiting = waitForOperation(client, "op-1", {
      progress: false,
      intervalMs: 50,
      notices,
    });
    // Once the 500 was seen, the scheduler goes down (connection refused), then comes back.
    await expect.poll(() => notices.lines.length, { timeout: 10_000 }).toBeGreaterThan(0);
    first.close();
    first.closeAllConnections();
    await once(first, "close");
    await new Promise((r) => setTimeout(r, 1_000));
    servers.push(await api(port, [{ status: 200, body: view("succeeded") }]));

    const done = await waiting;
    expect(done.status).toBe("succeeded");
    expect(notices.lines[0]).toMatch(/^reconnecting… \(the API refused the request \(500\): boom/);
    expect(notices.lines.at(-1)).toBe("reconnected\n");
  });

  it("gives up after the reconnect limit with the unreachable exit code", async () => {
    const gone = await api(0, [{ status: 200, body: view("running") }]);
    const port = (gone.address() as AddressInfo).port;
    gone.close();
    await once(gone, "close");
    const client = new ApiClient(`http://127.0.0.1:${port}`);
    const err = await waitForOperation(client, "op-1", {
      progress: false,
      reconnectForMs: 1_200,
      notices: collect(),
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ exitCode: EXIT.unavailable, transient: true });
  });

  it("does not retry an answer that retrying cannot change (404)", async () => {
    const server = await api(0, [
      { status: 404, body: { error: { code: "NOT_FOUND", message: "no operation op-1" } } },
    ]);
    servers.push(server);
    const client = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const notices = collect();
    const err = await waitForOperation(client, "op-1", { progress: false, notices }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ exitCode: EXIT.failed, transient: false });
    expect(notices.lines).toEqual([]);
  });
});
