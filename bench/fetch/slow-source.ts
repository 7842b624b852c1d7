/**
 * A source that answers every request after a fixed delay with a small JSON body, in its own
 * process (so its work does not share the measured runner's event loop). Prints its port.
 * `GET /stats` answers at once with what it has served so far, how late it was in total (its
 * own event loop, not the client, made those milliseconds) and its CPU time: the bench reports
 * them, so a starved source is seen, not blamed on the runner.
 * With `--stamps` every answer also carries `x-stamps: ARRIVED,FIRED` (process.hrtime in ns,
 * CLOCK_MONOTONIC, so comparable with the client's): when the request reached the handler and
 * when its timer ran. `bench/fetch/anatomy.ts` reads them.
 * Usage: node --import tsx bench/fetch/slow-source.ts DELAY_MS [--stamps]
 */
import { createServer } from "node:http";

const delayMs = Number(process.argv[2] ?? 50);
const stamps = process.argv.includes("--stamps");
let served = 0;
let lateMs = 0;
const server = createServer((req, res) => {
  req.resume();
  if (req.url === "/stats") {
    const cpu = process.cpuUsage();
    res.end(JSON.stringify({ served, lateMs, cpuMs: (cpu.user + cpu.system) / 1000 }));
    return;
  }
  const arrived = performance.now();
  const arrivedNs = stamps ? process.hrtime.bigint() : 0n;
  setTimeout(() => {
    served++;
    lateMs += Math.max(0, performance.now() - arrived - delayMs);
    const body = JSON.stringify({ ok: true, n: served });
    if (stamps) res.setHeader("x-stamps", `${arrivedNs},${process.hrtime.bigint()}`);
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  }, delayMs);
});
server.keepAliveTimeout = 60_000;
server.maxRequestsPerSocket = 0;
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
