/** Whether processes still run, for tests that check nothing outlives what they killed. */
import { readFileSync } from "node:fs";

/**
 * Whether `pid` runs. A zombie (exited, not yet reaped: an orphan whose new parent does not
 * reap, as in some containers) counts as ended. Linux: reads `/proc/<pid>/stat`.
 */
export function isRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // "pid (comm) S ...": the state follows the last ")" (comm may contain one).
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}
