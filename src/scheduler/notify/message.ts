/**
 * What a notification says: one summary of the operation for every channel (the webhook's JSON
 * body with a Slack-compatible `text`, and the email's subject and text). Pure.
 */
import type { CostReport } from "../../shared/schemas/cost.ts";
import type { NotifyEvent } from "../../shared/schemas/notify.ts";
import { type Manifest, tenantOf } from "../../shared/schemas/operation.ts";

export interface OperationSummary {
  id: string;
  name: string | null;
  tenant: string;
  status: Manifest["status"];
  task: string;
  rows: { total: number | null; done: number | null; failed: number | null };
  shards: number | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error?: { code: string; message: string };
}

export interface CostSummary {
  totalUsd: number;
  onDemandCounterfactualUsd: number;
  savingPercent: number | null;
  provisional: boolean;
}

/** The webhook's JSON body (version 1). */
export interface WebhookPayload {
  v: 1;
  event: NotifyEvent;
  /** Unique per delivery: a receiver that sees it twice (a retry) can drop the second. */
  deliveryId: string;
  sentAt: string;
  operation: OperationSummary;
  /**
   * Where a person sees the operation: its page in the scheduler's web console
   * (`BASE/#/operations/ID`); null when no public base URL is configured.
   */
  link: string | null;
  /** The operation's JSON in the API (`BASE/operations/ID`), for machines; null likewise. */
  apiLink: string | null;
  cost: CostSummary | null;
  /** One line for people (Slack incoming webhooks show it as the message). */
  text: string;
}

export function summaryOf(manifest: Manifest): OperationSummary {
  return {
    id: manifest.id,
    name: manifest.spec.name ?? null,
    tenant: tenantOf(manifest),
    status: manifest.status,
    task: manifest.spec.task.name,
    rows: {
      total: manifest.rows ?? null,
      done: manifest.result?.rows ?? null,
      failed: manifest.result?.errorRows ?? null,
    },
    shards: manifest.shards?.length ?? null,
    createdAt: manifest.createdAt,
    startedAt: manifest.startedAt ?? null,
    finishedAt: manifest.finishedAt ?? null,
    ...(manifest.error ? { error: manifest.error } : {}),
  };
}

export function costSummaryOf(report: CostReport): CostSummary {
  return {
    totalUsd: report.totalUsd,
    onDemandCounterfactualUsd: report.onDemandCounterfactualUsd,
    savingPercent: report.savingPercent,
    provisional: report.provisional,
  };
}

const VERB: Record<NotifyEvent, string> = {
  accepted: "was accepted",
  started: "started",
  succeeded: "succeeded",
  "succeeded-with-failures": "succeeded with failures",
  failed: "failed",
  cancelled: "was cancelled",
};

const usd = (n: number) => `$${n.toFixed(n < 1 ? 4 : 2)}`;

/** "cost $0.0123 (all on-demand $0.0410, 70% saved)". */
export function costLine(cost: CostSummary): string {
  const saving = cost.savingPercent === null ? "" : `, ${Math.round(cost.savingPercent)}% saved`;
  return `cost ${usd(cost.totalUsd)} (all on-demand ${usd(cost.onDemandCounterfactualUsd)}${saving})${cost.provisional ? ", provisional" : ""}`;
}

/** The one-line text: what happened, the row counts, the cost, the error, the link. */
export function notificationText(
  event: NotifyEvent,
  op: OperationSummary,
  cost: CostSummary | null,
  link: string | null,
): string {
  const who = op.name ? `"${op.name}" (${op.id})` : op.id;
  const parts = [`shardfleet: operation ${who} ${VERB[event]}`];
  if (op.rows.done !== null) {
    parts.push(`${op.rows.done} rows, ${op.rows.failed ?? 0} failed`);
  } else if (op.rows.total !== null) {
    parts.push(`${op.rows.total} rows in ${op.shards ?? 0} shards`);
  }
  if (cost) parts.push(costLine(cost));
  if (op.error) parts.push(`error ${op.error.code}: ${op.error.message}`);
  return `${parts.join("; ")}${link ? ` ${link}` : ""}`;
}

/** The operation's page in the web console under the scheduler's public base URL. */
export function operationLink(baseUrl: string | undefined, id: string): string | null {
  if (!baseUrl) return null;
  // The console routes by the URL's fragment (src/console/), served at the base's root.
  return `${baseUrl.replace(/\/+$/, "")}/#/operations/${encodeURIComponent(id)}`;
}

/** The operation's JSON in the API under the scheduler's public base URL. */
export function operationApiLink(baseUrl: string | undefined, id: string): string | null {
  if (!baseUrl) return null;
  return `${baseUrl.replace(/\/+$/, "")}/operations/${encodeURIComponent(id)}`;
}

export function webhookPayload(input: {
  event: NotifyEvent;
  deliveryId: string;
  sentAt: string;
  manifest: Manifest;
  cost: CostReport | undefined;
  linkBase: string | undefined;
}): WebhookPayload {
  const operation = summaryOf(input.manifest);
  const cost = input.cost ? costSummaryOf(input.cost) : null;
  const link = operationLink(input.linkBase, operation.id);
  return {
    v: 1,
    event: input.event,
    deliveryId: input.deliveryId,
    sentAt: input.sentAt,
    operation,
    link,
    apiLink: operationApiLink(input.linkBase, operation.id),
    cost,
    text: notificationText(input.event, operation, cost, link),
  };
}

/** The email: subject names the operation and event; the body is the text plus the details. */
export function emailContent(payload: WebhookPayload): { subject: string; text: string } {
  const op = payload.operation;
  const lines = [
    payload.text,
    "",
    `operation: ${op.id}`,
    ...(op.name ? [`name: ${op.name}`] : []),
    `tenant: ${op.tenant}`,
    `status: ${op.status}`,
    `task: ${op.task}`,
    ...(op.rows.total !== null ? [`rows: ${op.rows.total}`] : []),
    ...(op.rows.done !== null
      ? [`rows done: ${op.rows.done}`, `rows failed: ${op.rows.failed}`]
      : []),
    ...(payload.cost ? [costLine(payload.cost)] : []),
    ...(op.error ? [`error: ${op.error.code}: ${op.error.message}`] : []),
    ...(payload.link ? [`link: ${payload.link}`] : []),
  ];
  return {
    subject: `[shardfleet] ${op.name ?? op.id} ${VERB[payload.event]}`,
    text: `${lines.join("\n")}\n`,
  };
}
