/** An error the CLI reports as one line on stderr with a chosen exit code, never a stack trace. */
export class CliError extends Error {
  readonly exitCode: number;
  /** The same call may succeed later (API unreachable, timed out, 5xx, 429): a waiter retries. */
  readonly transient: boolean;
  constructor(message: string, exitCode = 1, options: { transient?: boolean } = {}) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
    this.transient = options.transient ?? false;
  }
}

/** Exit codes, documented in `--help` and the README. */
export const EXIT = {
  ok: 0,
  failed: 1,
  succeededWithFailures: 2,
  usage: 64,
  unavailable: 69,
  /** `status ID` of an operation that has not finished yet (EX_TEMPFAIL). */
  notFinished: 75,
  /** EX_NOPERM: the API refused the bearer token (401). */
  unauthorized: 77,
  config: 78,
} as const;
