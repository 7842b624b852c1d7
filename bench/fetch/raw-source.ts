/**
 * `slow-source.ts` without node:http: the same answers (200, a small JSON body, keep-alive,
 * after DELAY_MS), the same `GET /stats` and `--stamps`, from a plain TCP server that reads
 * request heads itself and keeps one timer for all waiting answers (they wait the same delay,
 * so they are due in arrival order). A test peer for GET requests without a body only. It
 * exists to show how much of a round trip's overhead the source's own CPU is
 * (`bench/fetch/anatomy.ts --raw`); the bench's efficiency figure stays on `slow-source.ts`.
 * Usage: node --import tsx bench/fetch/raw-source.ts DELAY_MS [--stamps]
 */
import { createServer, type Socket } from "node:net";

const delayMs = Number(process.argv[2] ?? 50);
const stamps = process.argv.includes("--stamps");
let served = 0;
let lateMs = 0;

interface Waiting {
  socket: Socket;
  arrived: number;
  arrivedNs: bigint;
}
/** Answers not yet sent, in arrival order (so in due order). */
const waiting: Waiting[] = [];
let head = 0;
/** Whether a timer is set for the first waiting answer. */
let armed = false;

function answer(socket: Socket, status: string, body: string, extra = ""): void {
  socket.write(
    `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: keep-alive\r\n${extra}\r\n${body}`,
  );
}

function due(): void {
  armed = false;
  const now = performance.now();
  while (head < waiting.length) {
    const w = waiting[head]!;
    const late = now - w.arrived - delayMs;
    if (late < 0) {
      armed = true;
      setTimeout(due, Math.ceil(-late));
      break;
    }
    head++;
    if (w.socket.destroyed) continue;
    served++;
    lateMs += late;
    const extra = stamps ? `x-stamps: ${w.arrivedNs},${process.hrtime.bigint()}\r\n` : "";
    answer(w.socket, "200 OK", JSON.stringify({ ok: true, n: served }), extra);
  }
  if (head === waiting.length) {
    waiting.length = 0;
    head = 0;
  } else if (head > 4096) {
    waiting.splice(0, head);
    head = 0;
  }
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending = "";
  socket.on("data", (chunk: Buffer) => {
    pending += chunk.toString("latin1");
    for (let end = pending.indexOf("\r\n\r\n"); end >= 0; end = pending.indexOf("\r\n\r\n")) {
      const line = pending.slice(0, pending.indexOf("\r\n"));
      pending = pending.slice(end + 4);
      if (line.split(" ")[1] === "/stats") {
        const cpu = process.cpuUsage();
        answer(
          socket,
          "200 OK",
          JSON.stringify({ served, lateMs, cpuMs: (cpu.user + cpu.system) / 1000 }),
        );
        continue;
      }
      waiting.push({
        socket,
        arrived: performance.now(),
        arrivedNs: stamps ? process.hrtime.bigint() : 0n,
      });
      if (!armed) {
        armed = true;
        setTimeout(due, delayMs);
      }
    }
  });
  socket.on("error", () => socket.destroy());
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
});
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  for (const w of waiting) w.socket.destroy();
  setTimeout(() => process.exit(0), 1000).unref();
});
