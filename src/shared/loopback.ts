/** Loopback names and addresses, for decisions that trust "this machine only". */
import { isIP } from "node:net";

/** Whether `host` (as given to listen, a client address or a URL's hostname) is loopback only. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, "")
    .replace(/^::ffff:/, "");
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}
