/**
 * Submitting an operation: the workbook (its sheets and header row previewed by the intake's
 * own reader), the task the scheduler offers with its fields, shard size and tolerance, and who
 * is told about it.
 */
import { useEffect, useState } from "preact/hooks";
import type { TaskOffer, WorkbookPreview } from "../shared/contracts/console.ts";
import type { Accepted } from "../shared/contracts/operations.ts";
import { type Api, errorText } from "./api.ts";
import { go } from "./router.ts";

const EVENTS = [
  "accepted",
  "started",
  "succeeded",
  "succeeded-with-failures",
  "failed",
  "cancelled",
];

/** `column = path` lines → the http-enrich `results` map. */
export function parseResults(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const [column, path] = line.split("=").map((s) => s.trim());
    if (column && path) out[column] = path;
  }
  return out;
}

export function UploadPage(props: { api: Api }) {
  const { api } = props;
  const [offer, setOffer] = useState<TaskOffer | null>(null);
  const [file, setFile] = useState<File | null>(null);
  const [preview, setPreview] = useState<WorkbookPreview | null>(null);
  const [previewNote, setPreviewNote] = useState<string | null>(null);
  const [sheet, setSheet] = useState("");
  const [name, setName] = useState("");
  const [task, setTask] = useState<"http-enrich" | "transform">("http-enrich");
  const [url, setUrl] = useState("");
  const [results, setResults] = useState("");
  const [concurrency, setConcurrency] = useState("");
  const [plugin, setPlugin] = useState("");
  const [pluginOptions, setPluginOptions] = useState("{}");
  const [shardSize, setShardSize] = useState("500");
  const [tolerated, setTolerated] = useState("10");
  const [webhook, setWebhook] = useState("");
  const [emails, setEmails] = useState("");
  const [on, setOn] = useState<string[]>(EVENTS);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.get<TaskOffer>("/tasks").then(
      (o) => {
        setOffer(o);
        const plugins = o.tasks.find((t) => t.name === "transform")?.plugins ?? [];
        setPlugin(plugins[0] ?? "");
      },
      (err) => setError(errorText(err)),
    );
  }, [api]);

  const loadPreview = async (f: File, wanted?: string) => {
    setPreviewNote("Reading the workbook…");
    const form = new FormData();
    if (wanted) form.append("sheet", wanted);
    form.append("file", f, f.name);
    try {
      const p = await api.postForm<WorkbookPreview>("/workbooks/preview", form);
      setPreview(p);
      setSheet(p.sheet ?? "");
      setPreviewNote(null);
    } catch (err) {
      setPreview(null);
      setPreviewNote(errorText(err));
    }
  };

  const onFile = (e: Event) => {
    const f = (e.target as HTMLInputElement).files?.[0] ?? null;
    setFile(f);
    setPreview(null);
    setSheet("");
    if (f) void loadPreview(f);
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!file) return setError("choose a workbook first");
    setError(null);
    let options: Record<string, unknown>;
    if (task === "http-enrich") {
      options = { url, results: parseResults(results) };
      if (concurrency) options.concurrency = Number(concurrency);
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(pluginOptions || "{}");
      } catch {
        return setError("plugin options: not valid JSON");
      }
      options = { module: plugin, options: parsed };
    }
    const notify: Record<string, unknown> = {};
    if (webhook) notify.webhook = webhook;
    const addresses = emails
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean);
    if (addresses.length > 0) notify.email = addresses;
    const spec: Record<string, unknown> = {
      task: { name: task, options },
      shardSize: Number(shardSize),
      toleratedFailurePercent: Number(tolerated),
    };
    if (name) spec.name = name;
    if (sheet && preview?.format !== "csv") spec.sheet = sheet;
    if (Object.keys(notify).length > 0) spec.notify = { ...notify, on };
    const form = new FormData();
    form.append("spec", JSON.stringify(spec));
    form.append("file", file, file.name);
    setBusy(true);
    try {
      const accepted = await api.postForm<Accepted>("/operations", form);
      go(`#/operations/${accepted.id}`);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const plugins = offer?.tasks.find((t) => t.name === "transform")?.plugins ?? [];
  return (
    <section aria-labelledby="new-title">
      <h1 id="new-title" tabIndex={-1}>
        New operation
      </h1>
      <form onSubmit={submit} class="form">
        <fieldset>
          <legend>Workbook</legend>
          <label for="file">Workbook (.xlsx or .csv)</label>
          <input id="file" type="file" accept=".xlsx,.csv" required onChange={onFile} />
          <p role="status" aria-live="polite" class="muted">
            {previewNote}
          </p>
          {preview && preview.format === "xlsx" ? (
            <>
              <label for="sheet">Sheet</label>
              <select
                id="sheet"
                value={sheet}
                onChange={(e) => {
                  const s = (e.target as HTMLSelectElement).value;
                  setSheet(s);
                  if (file) void loadPreview(file, s);
                }}
              >
                {preview.sheets.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </>
          ) : null}
          {preview ? <Preview preview={preview} /> : null}
          <label for="name">Name (optional)</label>
          <input id="name" value={name} onInput={(e) => setName(value(e))} />
        </fieldset>

        <fieldset>
          <legend>Task</legend>
          <label for="task">Task</label>
          <select
            id="task"
            value={task}
            onChange={(e) => setTask(value(e) as "http-enrich" | "transform")}
          >
            {(offer?.tasks ?? [{ name: "http-enrich" }]).map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
          {task === "http-enrich" ? (
            <>
              <label for="url">URL template</label>
              <input
                id="url"
                type="url"
                required
                placeholder="https://registry.example/tax/{customer_id}"
                aria-describedby="url-help"
                value={url}
                onInput={(e) => setUrl(value(e))}
              />
              <p id="url-help" class="help">
                {"{column}"} placeholders name header columns
                {preview ? `: ${preview.headers.map((h) => `{${h}}`).join(" ")}` : ""}.
              </p>
              <label for="results">Result columns</label>
              <textarea
                id="results"
                rows={3}
                required
                placeholder={"tax_due = taxDue\ntax_year = year"}
                aria-describedby="results-help"
                value={results}
                onInput={(e) => setResults(value(e))}
              />
              <p id="results-help" class="help">
                One per line: output column = dotted path into the JSON answer.
              </p>
              <label for="concurrency">Requests in flight per worker (optional, 1–200)</label>
              <input
                id="concurrency"
                type="number"
                min={1}
                max={200}
                value={concurrency}
                onInput={(e) => setConcurrency(value(e))}
              />
            </>
          ) : (
            <>
              <label for="plugin">Plugin</label>
              <select id="plugin" value={plugin} onChange={(e) => setPlugin(value(e))}>
                {plugins.map((p) => (
                  <option key={p} value={p}>
                    {p}
                  </option>
                ))}
              </select>
              <label for="plugin-options">Plugin options (JSON)</label>
              <textarea
                id="plugin-options"
                rows={3}
                value={pluginOptions}
                onInput={(e) => setPluginOptions(value(e))}
              />
            </>
          )}
          <label for="shard-size">Rows per shard</label>
          <input
            id="shard-size"
            type="number"
            min={1}
            required
            value={shardSize}
            onInput={(e) => setShardSize(value(e))}
          />
          <label for="tolerated">Tolerated failed rows (%)</label>
          <input
            id="tolerated"
            type="number"
            min={0}
            max={100}
            step="any"
            required
            value={tolerated}
            onInput={(e) => setTolerated(value(e))}
          />
        </fieldset>

        {offer && (offer.notify.webhook || offer.notify.email) ? (
          <fieldset>
            <legend>Notifications</legend>
            {offer.notify.webhook ? (
              <>
                <label for="webhook">Webhook URL</label>
                <input
                  id="webhook"
                  type="url"
                  value={webhook}
                  onInput={(e) => setWebhook(value(e))}
                />
              </>
            ) : null}
            {offer.notify.email ? (
              <>
                <label for="emails">Email addresses (comma separated)</label>
                <input id="emails" value={emails} onInput={(e) => setEmails(value(e))} />
              </>
            ) : null}
            <fieldset class="checks">
              <legend>Tell about</legend>
              {EVENTS.map((ev) => (
                <label key={ev} class="check">
                  <input
                    type="checkbox"
                    checked={on.includes(ev)}
                    onChange={(e) =>
                      setOn((old) =>
                        (e.target as HTMLInputElement).checked
                          ? [...old, ev]
                          : old.filter((o) => o !== ev),
                      )
                    }
                  />{" "}
                  {ev}
                </label>
              ))}
            </fieldset>
          </fieldset>
        ) : (
          <p class="muted small">This scheduler sends no notifications (none configured).</p>
        )}

        <button type="submit" disabled={busy}>
          Submit
        </button>
        <p role="alert" class="error">
          {error}
        </p>
      </form>
    </section>
  );
}

function value(e: Event): string {
  return (e.target as HTMLInputElement).value;
}

function Preview(props: { preview: WorkbookPreview }) {
  const { headers, rows } = props.preview;
  return (
    <div class="table-wrap">
      <table class="preview" data-testid="preview">
        <caption>Header row and first rows, as the scheduler reads them</caption>
        <thead>
          <tr>
            {headers.map((h) => (
              <th key={h} scope="col">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {headers.map((h, k) => (
                <td key={h}>{r[k] === null || r[k] === undefined ? "" : String(r[k])}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
