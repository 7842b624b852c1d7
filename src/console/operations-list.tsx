/** The operations list: newest first, a page at a time (the API's cursor). */
import { useEffect, useState } from "preact/hooks";
import type { OperationList, OperationView } from "../shared/contracts/operations.ts";
import { formatUsd } from "../shared/cost-format.ts";
import { type Api, errorText } from "./api.ts";
import { formatDuration } from "./progress.ts";

const PAGE = 20;

export function progressPercent(v: OperationView): number | null {
  if (v.rows.total === null || v.rows.total === 0) return null;
  return Math.round((v.rows.done / v.rows.total) * 100);
}

export function OperationsList(props: { api: Api }) {
  const [pages, setPages] = useState<string[]>([""]);
  const [list, setList] = useState<OperationList | null>(null);
  const [error, setError] = useState<string | null>(null);
  const cursor = pages.at(-1) ?? "";

  useEffect(() => {
    let stop = false;
    const load = () =>
      props.api
        .get<OperationList>(
          `/operations?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
        )
        .then(
          (l) => {
            if (!stop) {
              setList(l);
              setError(null);
            }
          },
          (err) => !stop && setError(errorText(err)),
        );
    void load();
    // The list is a snapshot: refreshed every 5 s (each operation's page streams live).
    const timer = window.setInterval(load, 5_000);
    return () => {
      stop = true;
      window.clearInterval(timer);
    };
  }, [props.api, cursor]);

  return (
    <section aria-labelledby="ops-title">
      <h1 id="ops-title" tabIndex={-1}>
        Operations
      </h1>
      <p role="alert" class="error">
        {error}
      </p>
      {list === null ? (
        <p>Loading…</p>
      ) : list.operations.length === 0 ? (
        <p>
          No operations yet. <a href="#/new">Submit one</a>.
        </p>
      ) : (
        <div class="table-wrap">
          <table class="ops">
            <caption class="sr-only">Operations, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Operation</th>
                <th scope="col">Status</th>
                <th scope="col">Rows</th>
                <th scope="col">Progress</th>
                <th scope="col">Cost</th>
                <th scope="col">Age</th>
              </tr>
            </thead>
            <tbody>
              {list.operations.map((v) => (
                <Row key={v.id} api={props.api} view={v} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav aria-label="Pages" class="pager">
        <button
          type="button"
          disabled={pages.length <= 1}
          onClick={() => setPages((p) => p.slice(0, -1))}
        >
          Newer
        </button>
        <button
          type="button"
          disabled={!list?.nextCursor}
          onClick={() => list?.nextCursor && setPages((p) => [...p, list.nextCursor!])}
        >
          Older
        </button>
      </nav>
    </section>
  );
}

function Row(props: { api: Api; view: OperationView }) {
  const v = props.view;
  const pct = progressPercent(v);
  const age = (Date.now() - Date.parse(v.createdAt)) / 1000;
  return (
    <tr data-testid="operation-row" data-status={v.status}>
      <td>
        <a href={`#/operations/${v.id}`}>{v.name ?? v.id}</a>
        {v.name ? <div class="muted small">{v.id}</div> : null}
      </td>
      <td>
        <span class={`status status-${v.status}`}>{v.status}</span>
      </td>
      <td>
        {v.rows.done.toLocaleString()} / {v.rows.total?.toLocaleString() ?? "?"}
        {v.rows.failed > 0 ? <div class="small">{v.rows.failed} failed</div> : null}
      </td>
      <td>
        {pct === null ? (
          "—"
        ) : (
          <progress max={100} value={pct} aria-label={`${v.id} progress`}>
            {pct}%
          </progress>
        )}
      </td>
      <td>
        <CostCell api={props.api} view={v} />
      </td>
      <td>{formatDuration(age)}</td>
    </tr>
  );
}

const FINISHED = new Set(["succeeded", "succeeded-with-failures", "failed", "cancelled"]);

/** A finished operation's cost from its report (fetched once); a live one's is on its page. */
function CostCell(props: { api: Api; view: OperationView }) {
  const [usd, setUsd] = useState<string | null>(null);
  const finished = FINISHED.has(props.view.status);
  useEffect(() => {
    if (!finished) return;
    props.api
      .get<{ totalUsd: number }>(`/operations/${props.view.id}/cost`)
      .then((c) => setUsd(formatUsd(c.totalUsd)))
      .catch(() => setUsd("—"));
  }, [props.api, props.view.id, finished]);
  return <>{finished ? (usd ?? "…") : "—"}</>;
}
