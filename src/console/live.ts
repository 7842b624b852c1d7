/**
 * One operation, live: its view from `GET /operations/:id`, then the events stream. The stream
 * is opened with a fresh short-lived ticket each time (EventSource sends no headers); when it
 * drops, a new ticket reopens it. Status and progress are snapshots and fleet events carry their
 * sequence number, so what a reconnect repeats is merged, never doubled.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import type {
  CostEvent,
  FleetStreamEvent,
  ProgressEvent,
  SourceEvent,
  StatusEvent,
} from "../shared/contracts/events.ts";
import type { OperationView, SourceView } from "../shared/contracts/operations.ts";
import type { Api } from "./api.ts";
import type { Sample } from "./progress.ts";

const FINISHED = new Set(["succeeded", "succeeded-with-failures", "failed", "cancelled"]);

export function isFinished(status: string): boolean {
  return FINISHED.has(status);
}

export interface Live {
  view: OperationView | null;
  samples: Sample[];
  fleet: FleetStreamEvent[];
  cost: CostEvent | null;
  /** What an http-enrich operation's source sees now (the view's, then the stream's). */
  source: SourceView[];
  error: string | null;
  /** Whether the stream is open now. */
  connected: boolean;
  /** Reads the view again (after an action). */
  refresh: () => void;
}

export function useLiveOperation(api: Api, id: string): Live {
  const [view, setView] = useState<OperationView | null>(null);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [fleet, setFleet] = useState<FleetStreamEvent[]>([]);
  const [cost, setCost] = useState<CostEvent | null>(null);
  const [source, setSource] = useState<SourceView[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [connected, setConnected] = useState(false);
  const viewRef = useRef<OperationView | null>(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    let stopped = false;
    let source: EventSource | undefined;
    let refetch: number | undefined;
    const load = () =>
      api.get<OperationView>(`/operations/${encodeURIComponent(id)}`).then(
        (v) => {
          if (stopped) return;
          viewRef.current = v;
          setView(v);
          setSource(v.source ?? []);
        },
        (err: unknown) => !stopped && setError(String((err as Error).message ?? err)),
      );
    // Instances change with fleet events: the view (which lists them) is read again, at most
    // once every 2 s.
    const soon = () => {
      if (refetch === undefined) {
        refetch = window.setTimeout(() => {
          refetch = undefined;
          void load();
        }, 2_000);
      }
    };
    const open = async () => {
      if (stopped) return;
      let url: string;
      try {
        url = await api.eventsUrl(id);
      } catch (err) {
        setError(String((err as Error).message ?? err));
        return;
      }
      if (stopped) return;
      source = new EventSource(url);
      source.onopen = () => setConnected(true);
      source.addEventListener("status", (e) => {
        const s = JSON.parse((e as MessageEvent).data) as StatusEvent;
        const v = viewRef.current;
        if (v) {
          const next = { ...v, status: s.status, finishedAt: s.finishedAt };
          viewRef.current = next;
          setView(next);
        }
        soon();
      });
      source.addEventListener("progress", (e) => {
        const p = JSON.parse((e as MessageEvent).data) as ProgressEvent;
        const v = viewRef.current;
        if (v) {
          const next = { ...v, rows: p.rows, shards: p.shards };
          viewRef.current = next;
          setView(next);
        }
        setSamples((old) => [...old.slice(-119), { at: Date.now(), done: p.rows.done }]);
      });
      source.addEventListener("fleet", (e) => {
        const f = JSON.parse((e as MessageEvent).data) as FleetStreamEvent;
        setFleet((old) => (old.some((o) => o.seq === f.seq) ? old : [...old, f]));
        soon();
      });
      source.addEventListener("source", (e) => {
        setSource((JSON.parse((e as MessageEvent).data) as SourceEvent).origins);
      });
      source.addEventListener("cost", (e) => {
        setCost(JSON.parse((e as MessageEvent).data) as CostEvent);
      });
      source.onerror = () => {
        setConnected(false);
        const s = source;
        // The stream ends after the final status: nothing more to watch.
        if (viewRef.current && isFinished(viewRef.current.status)) {
          s?.close();
          void load();
          return;
        }
        // EventSource retries by itself with the same URL, whose ticket may have expired: a
        // closed source gets a new ticket instead.
        if (s?.readyState === EventSource.CLOSED) window.setTimeout(open, 1_000);
      };
    };
    void load().then(open);
    return () => {
      stopped = true;
      source?.close();
      if (refetch !== undefined) window.clearTimeout(refetch);
    };
  }, [api, id, tick]);

  return {
    view,
    samples,
    fleet,
    cost,
    source,
    error,
    connected,
    refresh: () => setTick((t) => t + 1),
  };
}
