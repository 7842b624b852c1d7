/** The options every API command takes (--api, --token) and the client they make. */
import { ApiClient, DEFAULT_API_URL } from "./api-client.ts";
import { CliError, EXIT } from "./cli-error.ts";

export const apiOption = [
  "--api <url>",
  "scheduler API URL (env SHARDFLEET_API_URL)",
  process.env.SHARDFLEET_API_URL || DEFAULT_API_URL,
] as const;

export const tokenOption = [
  "--token <token>",
  "API bearer token, for an API that requires one (default: env SHARDFLEET_API_TOKEN, which keeps it out of ps and shell history)",
] as const;

/** The API client for a command's --api and --token (else env SHARDFLEET_API_TOKEN). */
export function apiClient(opts: { api: string; token?: string }): ApiClient {
  const token = opts.token ?? (process.env.SHARDFLEET_API_TOKEN || undefined);
  if (token === undefined) return new ApiClient(opts.api);
  // A header value cannot hold a line break; two lines would be a rotation file pasted whole.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new CliError(
      "the API token (--token or SHARDFLEET_API_TOKEN) must be one token: no spaces or line breaks",
      EXIT.usage,
    );
  }
  return new ApiClient(opts.api, { token });
}
