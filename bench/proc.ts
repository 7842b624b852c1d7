/** What the benches read from /proc (Linux): a process's or a thread's CPU time, its memory. */

/** USER_HZ: 100 on every Linux the benches run on. */
const CLOCK_TICKS = 100;

/**
 * CPU ms (user + system) in a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line: fields
 * 14 and 15 of stat(5), counted after the command name (which may hold spaces and parentheses).
 */
export function statCpuMs(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

/** Resident memory in MB from a `/proc/<pid>/status` text: peak (VmHWM) or current (VmRSS). */
export function statusMb(status: string, field: "VmHWM" | "VmRSS"): number | undefined {
  const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1];
  return kb ? Number(kb) / 1024 : undefined;
}
