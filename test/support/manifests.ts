/**
 * Manifests written by hand the way the scheduler leaves them, for tests that start from a given
 * point of an operation's life (splitting, running, split into shards).
 */
import { keys, shardIdFor } from "../../src/shared/keys.ts";
import type { ObjectStore } from "../../src/shared/object-store.ts";
import { type Manifest, manifestSchema } from "../../src/shared/schemas/operation.ts";

/** A manifest as the scheduler has it when splitting starts. */
export function testManifest(
  id: string,
  overrides: Partial<Manifest> & { format?: "xlsx" | "csv"; shardSize?: number } = {},
): Manifest {
  const { format = "xlsx", shardSize = 500, ...rest } = overrides;
  const now = new Date().toISOString();
  return {
    v: 1,
    id,
    status: "splitting",
    spec: {
      version: 1,
      task: { name: "transform", options: {} },
      shardSize,
      toleratedFailurePercent: 100,
    },
    input: { key: keys.input(id, format), filename: `input.${format}`, format, bytes: 0 },
    headers: [],
    createdAt: now,
    updatedAt: now,
    ...rest,
  };
}

/** A one-byte CSV upload, for manifests whose input is never read. */
function csvInput(id: string): Manifest["input"] {
  return { key: keys.input(id, "csv"), filename: "in.csv", format: "csv", bytes: 1 };
}

/** An operation split into `shards` shards of 10 rows, as the scheduler leaves it. */
export function splitManifest(
  id: string,
  shards: number,
  now: string,
  status: Manifest["status"] = "running",
): Manifest {
  return testManifest(id, {
    status,
    spec: {
      version: 1,
      task: { name: "transform", options: { module: "noop" } },
      shardSize: 10,
      toleratedFailurePercent: 0,
    },
    input: csvInput(id),
    headers: ["n"],
    rows: shards * 10,
    shards: Array.from({ length: shards }, (_, k) => ({
      id: shardIdFor(k),
      start: k * 10,
      end: (k + 1) * 10,
    })),
    createdAt: now,
    updatedAt: now,
    startedAt: now,
  });
}

/** Writes a manifest for `task` over `headers` (`spec` adds e.g. checkpoint settings). */
export async function writeManifest(
  store: ObjectStore,
  operationId: string,
  headers: string[],
  task: { name: string; options: Record<string, unknown> },
  spec: Partial<Pick<Manifest["spec"], "checkpoint" | "maxErrorAttempts">> = {},
): Promise<Manifest> {
  const manifest = testManifest(operationId, {
    status: "running",
    spec: { version: 1, task, shardSize: 500, toleratedFailurePercent: 100, ...spec },
    input: csvInput(operationId),
    headers,
  });
  await store.putJson(keys.manifest(operationId), manifestSchema, manifest);
  return manifest;
}
