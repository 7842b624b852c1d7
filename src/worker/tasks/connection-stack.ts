/**
 * One origin's keep-alive connections for http-enrich: undici Clients (one request at a time
 * each) on a stack. A request takes the connection freed last, or opens one, and gives it back
 * once its answer is read. The runner's limiter bounds the requests in flight, so the stack
 * never holds more connections than the runner's `concurrency`.
 *
 * Why not undici's Pool: a Pool counts a connection free only one event-loop turn after its
 * answer (a `setImmediate`), so the next request waits in the Pool's queue for that turn, and
 * then for undici's idle-socket check (another `setImmediate`, kept here) before it is written:
 * two turns of a loop that is busy with the other 199 answers, about a millisecond of every
 * 50 ms round trip at 200 in flight (`bench/fetch/anatomy.ts`). A Client taken here is written
 * after the one check.
 */
import { Client } from "undici";

export class ConnectionStack {
  readonly #origin: string;
  readonly #options: Client.Options;
  readonly #idle: Client[] = [];
  readonly #all = new Set<Client>();
  #closed = false;

  /** `options` go to every connection (timeouts, and `connect`: the egress-checking connector). */
  constructor(origin: string, options: Client.Options) {
    this.#origin = origin;
    this.#options = options;
  }

  /** Connections open or idle now. */
  get size(): number {
    return this.#all.size;
  }

  /** A connection for one request, to `give` back when its answer is read (or abandoned). */
  take(): Client {
    if (this.#closed) throw new Error("connection stack is closed");
    for (let client = this.#idle.pop(); client; client = this.#idle.pop()) {
      if (!client.destroyed && !client.closed) return client;
      this.#all.delete(client);
    }
    const client = new Client(this.#origin, this.#options);
    this.#all.add(client);
    return client;
  }

  /** Returns a connection taken by `take`; one that was destroyed is forgotten. */
  give(client: Client): void {
    if (client.destroyed || client.closed || this.#closed) {
      this.#all.delete(client);
      return;
    }
    this.#idle.push(client);
  }

  /** Closes every connection (requests in flight finish first). */
  async close(): Promise<void> {
    this.#closed = true;
    const clients = [...this.#all];
    this.#all.clear();
    this.#idle.length = 0;
    await Promise.all(clients.map((c) => (c.destroyed || c.closed ? undefined : c.close())));
  }
}
