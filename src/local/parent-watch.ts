/**
 * Preloaded (`node --import`) into every component the local stack starts, so that no scheduler
 * or worker outlives the stack, however the stack's process ended (SIGKILL included).
 *
 * The stack gives each child an IPC channel and nothing else uses it: the kernel closes it when
 * the stack's process goes, and Node emits `disconnect`. A parent pid other than the stack's
 * (the child was re-parented) is checked at start and once a second as a second signal: it also
 * catches a stack that died before the child got this far. Either way the component sends
 * itself SIGTERM, so its own shutdown runs (a worker drains and hands its shards back, the
 * scheduler releases its lease), and it exits by force if that has not ended it in time.
 *
 * Without a `parent` (a component started by hand or by systemd) this does nothing.
 */

/** Time the component's own shutdown gets before the process exits by force. */
const FORCE_EXIT_MS = 15_000;
const PARENT_POLL_MS = 1_000;

/**
 * `parent` in this module's URL query (`--import …/parent-watch.js?parent=PID`): the stack's
 * pid, so a parent that died before this ran (the channel already gone) is noticed too.
 */
function watchParent(): void {
  const parent = Number(new URL(import.meta.url).searchParams.get("parent"));
  if (!Number.isInteger(parent) || parent <= 0) return;
  let ending = false;
  const end = () => {
    if (ending) return;
    ending = true;
    clearInterval(poll);
    setTimeout(() => process.exit(1), FORCE_EXIT_MS).unref();
    process.kill(process.pid, "SIGTERM");
  };
  const poll = setInterval(() => {
    if (process.ppid !== parent) end();
  }, PARENT_POLL_MS);
  poll.unref();
  if (process.channel) {
    process.once("disconnect", end);
    // The channel must not keep an otherwise finished component alive.
    process.channel.unref();
  }
  if (process.ppid !== parent || !process.connected) end();
}

watchParent();
