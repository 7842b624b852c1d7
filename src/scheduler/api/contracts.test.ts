/**
 * The API answers what its shared contracts (src/shared/contracts/) declare — the schemas the
 * CLI client parses with — and every route under /operations/:id refuses a malformed id alike.
 */
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { multipart, transformSpec } from "../../../test/support/api.ts";
import { type LocalAws, startLocalAws } from "../../../test/support/local-aws.ts";
import { waitFor } from "../../../test/support/wait.ts";
import { systemClock } from "../../shared/clock.ts";
import {
  errorBodySchema,
  healthSchema,
  versionSchema,
  whoamiSchema,
} from "../../shared/contracts/api.ts";
import {
  acceptedSchema,
  operationListSchema,
  operationViewSchema,
} from "../../shared/contracts/operations.ts";
import { silentLogger } from "../../shared/logger.ts";
import { CostService } from "../cost/cost-service.ts";
import { TablePriceSource } from "../cost/price-source.ts";
import { OperationService } from "../operations.ts";
import { buildApp } from "./app.ts";

let env: LocalAws;
let app: FastifyInstance;

beforeAll(async () => {
  env = await startLocalAws("contracts-test");
  const logger = silentLogger();
  const deps = { store: env.store, logger, clock: systemClock };
  app = buildApp({
    operations: new OperationService(deps),
    logger,
    maxUploadBytes: 1 << 20,
    cost: new CostService({ ...deps, prices: new TablePriceSource() }),
  });
});

afterAll(async () => {
  await app?.close();
  await env?.close();
});

async function submit(name: string): Promise<string> {
  const { payload, headers } = await multipart([
    { name: "spec", value: JSON.stringify(transformSpec({ name })) },
    { name: "file", filename: "people.csv", type: "text/csv", data: "name\nada\nalan\n" },
  ]);
  const res = await app.inject({ method: "POST", url: "/operations", payload, headers });
  expect(res.statusCode).toBe(202);
  return acceptedSchema.parse(res.json()).id;
}

describe("API bodies match the shared contracts", () => {
  it("operation view, list and 202: parsed by the schemas the CLI uses", async () => {
    const id = await submit("contract op");
    const view = (await app.inject(`/operations/${id}`)).json();
    expect(operationViewSchema.parse(view)).toMatchObject({
      id,
      name: "contract op",
      status: "queued",
      shards: { total: 0 },
      instances: [],
      events: [],
    });
    const list = operationListSchema.parse((await app.inject("/operations")).json());
    expect(list.operations.map((o) => o.id)).toContain(id);
    const listed = list.operations.find((o) => o.id === id);
    // The list shows the same view without the fleet parts.
    expect(listed && operationViewSchema.parse(listed).instances).toBeUndefined();
  });

  it("a view without a name says null, as the contract declares", async () => {
    const { payload, headers } = await multipart([
      { name: "spec", value: JSON.stringify({ ...transformSpec(), name: undefined }) },
      { name: "file", filename: "people.csv", type: "text/csv", data: "name\nada\n" },
    ]);
    const res = await app.inject({ method: "POST", url: "/operations", payload, headers });
    const { id } = acceptedSchema.parse(res.json());
    const view = await waitFor("the view", async () => {
      const r = await app.inject(`/operations/${id}`);
      return r.statusCode === 200 ? r.json() : undefined;
    });
    expect(operationViewSchema.parse(view).name).toBeNull();
  });

  it("version, whoami, healthz and errors", async () => {
    expect(versionSchema.parse((await app.inject("/version")).json()).name).toBe("shardfleet");
    expect(whoamiSchema.parse((await app.inject("/whoami")).json()).role).toBe("admin");
    expect(healthSchema.parse((await app.inject("/healthz")).json())).toEqual({
      ok: true,
    });
    const missing = await app.inject("/operations/op-nope");
    expect(errorBodySchema.parse(missing.json()).error.code).toBe("NOT_FOUND");
  });
});

describe("a malformed operation id", () => {
  it.each(["/operations/not.an.id", "/operations/not.an.id/cost", "/operations/not.an.id/result"])(
    "%s answers 400 naming the id",
    async (url) => {
      const res = await app.inject(url);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toEqual({
        error: {
          code: "BAD_REQUEST",
          message: '"not.an.id" is not a valid operation id (letters, digits, - and _)',
        },
      });
    },
  );
});
