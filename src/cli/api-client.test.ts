/**
 * The CLI client parses every answer with the API's shared contracts: a body that does not match
 * (another version of the scheduler) is one line naming the field, never a crash further on.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { operationView } from "../../test/support/views.ts";
import { ApiClient } from "./api-client.ts";
import { CliError, EXIT } from "./cli-error.ts";

const view = operationView();

let server: Server | undefined;
afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** An API that answers every request 200 with `body`. */
async function apiAnswering(body: unknown): Promise<ApiClient> {
  server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
}

describe("ApiClient", () => {
  it("returns the view as the contract parses it", async () => {
    const client = await apiAnswering(view);
    expect(await client.get("op-1")).toEqual(view);
  });

  it("refuses a view that breaks the contract, naming the field", async () => {
    const { shards: _, ...noShards } = view;
    const client = await apiAnswering({ ...noShards, status: "exploded" });
    const err = await client.get("op-1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(EXIT.failed);
    expect((err as CliError).message).toMatch(
      /^the API answered GET \/operations\/op-1 with a body this CLI does not understand \(status: /,
    );
  });

  it("parses the cost report with its schema", async () => {
    const client = await apiAnswering({ v: 1, operationId: "op-1" });
    await expect(client.cost("op-1")).rejects.toThrow(/does not understand/);
  });
});
