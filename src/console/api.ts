/**
 * The console's API client: same origin, the bearer token from sessionStorage (never in a URL),
 * errors as values with the API's own code and message.
 */
import type { EventTicket } from "../shared/contracts/console.ts";

const TOKEN_KEY = "shardfleet.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** One line for an error, as the API words it. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class Api {
  constructor(readonly token: string | null) {}

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { ...extra, authorization: `Bearer ${this.token}` } : extra;
  }

  async #fetch(path: string, init: RequestInit = {}): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(path, {
        ...init,
        headers: this.#headers(init.headers as Record<string, string> | undefined),
      });
    } catch (err) {
      throw new ApiError(0, "UNREACHABLE", `the scheduler is unreachable (${String(err)})`);
    }
    if (!res.ok) {
      const body = (await res.json().catch(() => undefined)) as
        | { error?: { code?: string; message?: string } }
        | undefined;
      throw new ApiError(
        res.status,
        body?.error?.code ?? `HTTP_${res.status}`,
        body?.error?.message ?? `${res.status} ${res.statusText}`,
      );
    }
    return res;
  }

  async get<T>(path: string): Promise<T> {
    return (await (await this.#fetch(path)).json()) as T;
  }

  async post<T>(path: string, body?: unknown): Promise<T> {
    const init: RequestInit =
      body === undefined
        ? { method: "POST" }
        : {
            method: "POST",
            body: JSON.stringify(body),
            headers: { "content-type": "application/json" },
          };
    return (await (await this.#fetch(path, init)).json()) as T;
  }

  async postForm<T>(path: string, form: FormData): Promise<T> {
    return (await (await this.#fetch(path, { method: "POST", body: form })).json()) as T;
  }

  /** Fetches a file with the token and hands it to the browser as a download. */
  async download(path: string, fallbackName: string): Promise<string> {
    const res = await this.#fetch(path);
    const disposition = res.headers.get("content-disposition") ?? "";
    const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? fallbackName;
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
    return name;
  }

  /** A short-lived ticket that opens the operation's events stream (EventSource sends no headers). */
  eventsUrl = async (id: string): Promise<string> => {
    const { ticket } = await this.post<EventTicket>(
      `/operations/${encodeURIComponent(id)}/events/ticket`,
    );
    return `/operations/${encodeURIComponent(id)}/events?ticket=${encodeURIComponent(ticket)}`;
  };
}
