/** An error the CLI reports as one line on stderr with a chosen exit code, never a stack trace. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

/** Exit codes, documented in `--help` and the README. */
export const EXIT = {
  ok: 0,
  failed: 1,
  succeededWithFailures: 2,
  usage: 64,
  unavailable: 69,
  /** EX_NOPERM: the API refused the bearer token (401). */
  unauthorized: 77,
  config: 78,
} as const;
