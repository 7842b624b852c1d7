/**
 * One operation: live progress (shards by state, rows/s, ETA), instances by market over time,
 * the fleet events timeline, the cost chart once it has finished, downloads and actions.
 */
import { useEffect, useMemo, useState } from "preact/hooks";
import type { OperationView } from "../shared/contracts/operations.ts";
import { formatPercent, formatUsd } from "../shared/cost-format.ts";
import type { CostReport } from "../shared/schemas/cost.ts";
import { sourceLine } from "../shared/source-format.ts";
import { ACTION_LABEL, type Action, actionsFor } from "./actions.ts";
import { type Api, ApiError, errorText } from "./api.ts";
import { TimeChart } from "./chart.tsx";
import { isFinished, useLiveOperation } from "./live.ts";
import {
  cumulativeCost,
  etaSeconds,
  formatDuration,
  instancesOverTime,
  rowsPerSecond,
} from "./progress.ts";

const COLORS = { spot: "#1f7a6d", onDemand: "#c2410c", counterfactual: "#6b21a8" };

export function OperationPage(props: { api: Api; id: string }) {
  const live = useLiveOperation(props.api, props.id);
  const [notice, setNotice] = useState<string | null>(null);
  const [retryGone, setRetryGone] = useState(false);
  const v = live.view;

  const act = async (action: Action) => {
    setNotice(null);
    try {
      const body = action === "retry" ? {} : undefined;
      const next = await props.api.post<OperationView>(
        `/operations/${encodeURIComponent(props.id)}/${action}`,
        body,
      );
      setNotice(`${ACTION_LABEL[action]}: the operation is ${next.status}.`);
      live.refresh();
    } catch (err) {
      if (action === "retry" && err instanceof ApiError && [404, 405].includes(err.status)) {
        setRetryGone(true);
        setNotice("Retrying failed rows is not available on this scheduler.");
      } else setNotice(errorText(err));
    }
  };
  const download = async (path: string, name: string) => {
    setNotice(null);
    try {
      const saved = await props.api.download(path, name);
      setNotice(`Downloaded ${saved}.`);
    } catch (err) {
      setNotice(errorText(err));
    }
  };

  if (!v) {
    return (
      <section>
        <h1 tabIndex={-1}>Operation {props.id}</h1>
        <p role="alert" class="error">
          {live.error}
        </p>
        {live.error ? null : <p>Loading…</p>}
      </section>
    );
  }
  const finished = isFinished(v.status);
  const rate = rowsPerSecond(live.samples);
  const eta = etaSeconds(v.rows.total, v.rows.done, rate);
  const pct = v.rows.total ? Math.round((v.rows.done / v.rows.total) * 100) : 0;
  const base = `/operations/${encodeURIComponent(v.id)}`;
  const actions = actionsFor(v.status).filter((a) => !(a === "retry" && retryGone));

  return (
    <article aria-labelledby="op-title" data-status={v.status}>
      <h1 id="op-title" tabIndex={-1}>
        {v.name ?? v.id}
      </h1>
      <p class="muted small">
        {v.id} · {v.task} · tenant {v.tenant} · created {new Date(v.createdAt).toLocaleString()}
      </p>

      <section aria-labelledby="progress-title" class="panel">
        <h2 id="progress-title">Progress</h2>
        <p role="status" aria-live="polite" aria-atomic="true" class="live">
          <span class={`status status-${v.status}`} data-testid="status">
            {v.status}
          </span>{" "}
          {v.rows.done.toLocaleString()} of {v.rows.total?.toLocaleString() ?? "?"} rows
          {v.rows.failed > 0 ? `, ${v.rows.failed.toLocaleString()} failed` : ""}
          {finished ? "" : ` · ${rate === null ? "—" : rate.toFixed(0)} rows/s`}
          {!finished && eta !== null ? ` · ETA ${formatDuration(eta)}` : ""}
        </p>
        <progress max={100} value={pct} aria-label="rows done">
          {pct}%
        </progress>
        <ShardStrip shards={v.shards} />
        {!finished && live.source.length > 0 ? (
          <ul class="source small" data-testid="source" aria-label="What the source sees">
            {live.source.map((o) => (
              <li key={o.origin}>{sourceLine(o)}</li>
            ))}
          </ul>
        ) : null}
        {v.waiting ? <p class="warn">Waiting for capacity: {v.waiting.reason}</p> : null}
        {v.error ? (
          <p class="error">
            {v.error.code}: {v.error.message}
          </p>
        ) : null}
        <p class="muted small">{live.connected ? "Live" : finished ? "Finished" : "Connecting…"}</p>
      </section>

      <section aria-labelledby="actions-title" class="panel">
        <h2 id="actions-title">Actions</h2>
        <div class="buttons">
          {actions.map((a) => (
            <button
              type="button"
              key={a}
              class={a === "cancel" ? "danger" : ""}
              onClick={() => void act(a)}
            >
              {ACTION_LABEL[a]}
            </button>
          ))}
          {v.result || finished ? (
            <button type="button" onClick={() => void download(`${base}/result`, "result.xlsx")}>
              Download result
            </button>
          ) : null}
          {finished ? (
            <>
              <button
                type="button"
                onClick={() => void download(`${base}/cost?format=csv`, `${v.id}-cost.csv`)}
              >
                Cost report (CSV)
              </button>
              <button
                type="button"
                onClick={() => void download(`${base}/cost?format=xlsx`, `${v.id}-cost.xlsx`)}
              >
                Cost report (xlsx)
              </button>
            </>
          ) : null}
        </div>
        <p role="status" aria-live="polite" data-testid="notice">
          {notice}
        </p>
      </section>

      <Instances view={v} />
      <Timeline events={live.fleet} />
      {finished ? <Cost api={props.api} id={v.id} status={v.status} /> : null}
    </article>
  );
}

function ShardStrip(props: { shards: OperationView["shards"] }) {
  const s = props.shards;
  const parts = [
    ["done", s.done],
    ["running", s.running],
    ["pending", s.pending],
    ["failed", s.failed],
  ] as const;
  const label = parts.map(([k, n]) => `${n} ${k}`).join(", ");
  return (
    <div class="strip-wrap">
      <div class="strip" role="img" aria-label={`Shards: ${label} of ${s.total}`}>
        {parts.map(([k, n]) =>
          n > 0 ? <span key={k} class={`seg seg-${k}`} style={{ flexGrow: n }} /> : null,
        )}
      </div>
      <ul class="legend" data-testid="shards">
        {parts.map(([k, n]) => (
          <li key={k}>
            <span class={`dot seg-${k}`} aria-hidden="true" /> {k} {n}
          </li>
        ))}
      </ul>
    </div>
  );
}

function Instances(props: { view: OperationView }) {
  const instances = props.view.instances ?? [];
  const data = useMemo(() => instancesOverTime(instances, Date.now()), [instances]);
  const series = useMemo(
    () => [
      { label: "spot", values: data.spot, stroke: COLORS.spot, stepped: true },
      { label: "on-demand", values: data.onDemand, stroke: COLORS.onDemand, stepped: true },
    ],
    [data],
  );
  if (instances.length === 0) return null;
  const live = instances.filter((i) => i.state === "pending" || i.state === "running");
  return (
    <section aria-labelledby="inst-title" class="panel">
      <h2 id="inst-title">Instances</h2>
      <p>
        {live.length} live of {instances.length} launched ·{" "}
        {live.filter((i) => i.market === "spot").length} spot,{" "}
        {live.filter((i) => i.market === "on-demand").length} on-demand
      </p>
      <TimeChart
        title="Instances by market over time"
        x={data.x}
        series={series}
        yLabel="instances"
        summary={`Instances by market: at most ${Math.max(0, ...data.spot)} spot and ${Math.max(0, ...data.onDemand)} on-demand at once`}
      />
    </section>
  );
}

function Timeline(props: { events: { seq: number; at: string; kind: string; message: string }[] }) {
  if (props.events.length === 0) return null;
  return (
    <section aria-labelledby="events-title" class="panel">
      <h2 id="events-title">Fleet events</h2>
      <ol class="timeline">
        {props.events.map((e) => (
          <li key={e.seq}>
            <time dateTime={e.at}>{new Date(e.at).toLocaleTimeString()}</time>{" "}
            <span class="kind">{e.kind}</span> {e.message}
          </li>
        ))}
      </ol>
    </section>
  );
}

function Cost(props: { api: Api; id: string; status: string }) {
  const [report, setReport] = useState<CostReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    props.api.get<CostReport>(`/operations/${encodeURIComponent(props.id)}/cost`).then(
      (r) => setReport(r),
      (err) => setError(errorText(err)),
    );
  }, [props.api, props.id, props.status]);
  const data = useMemo(
    () =>
      report
        ? cumulativeCost(report.timeline, report.totalUsd, report.onDemandCounterfactualUsd)
        : null,
    [report],
  );
  const series = useMemo(
    () =>
      data
        ? [
            { label: "spot", values: data.spot, stroke: COLORS.spot },
            { label: "on-demand", values: data.onDemand, stroke: COLORS.onDemand },
            {
              label: "all on-demand (counterfactual)",
              values: data.counterfactual,
              stroke: COLORS.counterfactual,
            },
          ]
        : [],
    [data],
  );
  return (
    <section aria-labelledby="cost-title" class="panel">
      <h2 id="cost-title">Cost</h2>
      {error ? <p class="muted">{error}</p> : null}
      {report ? (
        <>
          <p data-testid="cost">
            {formatUsd(report.totalUsd)} · all on-demand{" "}
            {formatUsd(report.onDemandCounterfactualUsd)} · saved{" "}
            {formatPercent(report.savingPercent)}
            {report.provisional ? " (provisional)" : ""}
          </p>
          {data && data.x.length > 0 ? (
            <TimeChart
              title="Cumulative cost (USD): spot and on-demand, against all on-demand"
              x={data.x}
              series={series}
              yLabel="USD"
              summary={`Cost ${formatUsd(report.totalUsd)} against ${formatUsd(report.onDemandCounterfactualUsd)} all on-demand`}
            />
          ) : (
            <p class="muted">No priced instance time (instances no fleet record lists).</p>
          )}
        </>
      ) : null}
    </section>
  );
}
