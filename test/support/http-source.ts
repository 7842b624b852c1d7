/** Test support: a task's source, an HTTP server on loopback that answers as the test says. */
import { createServer, type RequestListener } from "node:http";
import type { AddressInfo } from "node:net";

export interface HttpSource {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `127.0.0.1:PORT`, as `egressAllow` names it. */
  readonly host: string;
  readonly port: number;
  /** Drops open connections (keep-alive sockets of a worker's pool) and stops listening. */
  close(): Promise<void>;
}

/** Listens on a free loopback port. */
export async function startHttpSource(handler: RequestListener): Promise<HttpSource> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
