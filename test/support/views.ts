/** Operation views as the API sends them, for tests of what reads them (the CLI). */
import type { OperationView } from "../../src/shared/contracts/operations.ts";

/** A running operation of one shard, 1 of 4 rows done; `overrides` replace whole fields. */
export function operationView(overrides: Partial<OperationView> = {}): OperationView {
  return {
    id: "op-1",
    tenant: "default",
    name: null,
    status: "running",
    task: "transform",
    rows: { total: 4, done: 1, failed: 0 },
    shards: { total: 1, pending: 0, running: 1, done: 0, failed: 0 },
    createdAt: "2026-12-03T10:00:00.000Z",
    startedAt: "2026-12-03T10:00:01.000Z",
    finishedAt: null,
    ...overrides,
  };
}
