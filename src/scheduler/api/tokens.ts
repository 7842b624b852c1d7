/**
 * The API's bearer tokens, read once at start from the source the config names: none, a tokens
 * file (already read by loadConfig) or an SSM Parameter Store SecureString. A token changed at
 * the source takes effect at the scheduler's next start.
 */
import type { SSMClient } from "@aws-sdk/client-ssm";
import { createSsmClient } from "../../shared/aws.ts";
import { type ApiAuth, parseApiTokens } from "../../shared/config.ts";
import { ConfigError, describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ApiToken } from "../../shared/schemas/tokens.ts";

const SETTING = "SHARDFLEET_API_TOKEN_SSM_PARAMETER";
/** A start must not hang on an unreachable endpoint (the SDK retries within this). */
const SSM_TIMEOUT_MS = 30_000;

/** The one Parameter Store call the scheduler makes: an SSMClient. */
export type ParameterStore = Pick<SSMClient, "send">;

export interface ApiTokenDeps {
  logger: Logger;
  /**
   * Parameter Store, for the `ssm` source only.
   * @default an SSM client made for this one read (region and endpoint from the environment)
   */
  ssm?: ParameterStore;
}

/**
 * The tokens the API accepts (tenant entries, or old-format plain tokens); empty when none is configured (the API is then unauthenticated,
 * which is logged). Throws a ConfigError naming the setting when the parameter is missing,
 * unreadable, not a SecureString, or holds a token that parseApiTokens refuses.
 */
export async function loadApiTokens(auth: ApiAuth, deps: ApiTokenDeps): Promise<ApiToken[]> {
  switch (auth.source) {
    case "none":
      deps.logger.info(
        "the API is unauthenticated: neither SHARDFLEET_API_TOKENS_FILE nor SHARDFLEET_API_TOKEN_SSM_PARAMETER is set",
      );
      return [];
    case "file":
      deps.logger.info(
        { tokens: auth.tokens.length, source: "SHARDFLEET_API_TOKENS_FILE" },
        "the API requires a bearer token",
      );
      return [...auth.tokens];
    case "ssm": {
      const tokens = await readParameter(auth.parameter, deps.ssm);
      deps.logger.info(
        { tokens: tokens.length, source: SETTING, parameter: auth.parameter },
        "the API requires a bearer token",
      );
      return tokens;
    }
  }
}

async function readParameter(name: string, given: ParameterStore | undefined): Promise<ApiToken[]> {
  const { GetParameterCommand } = await import("@aws-sdk/client-ssm");
  const own = given ? undefined : await createSsmClient();
  const ssm = given ?? own!;
  const where = `${SETTING}=${name}`;
  try {
    const out = await ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true }), {
      abortSignal: AbortSignal.timeout(SSM_TIMEOUT_MS),
    });
    const parameter = out.Parameter;
    if (parameter?.Type !== "SecureString" || parameter.Value === undefined) {
      throw new ConfigError(
        `${where} is a ${parameter?.Type ?? "value-less"} parameter: store the tokens as a SecureString`,
        { details: { setting: SETTING } },
      );
    }
    return parseApiTokens(parameter.Value, SETTING);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // An SDK error's name is its code (AccessDeniedException); SSM sends ParameterNotFound
    // without a message, which the SDK reports as "UnknownError".
    const errorName = err instanceof Error ? err.name : undefined;
    const message = describeError(err);
    const code =
      errorName && errorName !== "Error" && errorName !== message ? errorName : undefined;
    const reason = !code ? message : message === "UnknownError" ? code : `${code}: ${message}`;
    throw new ConfigError(`cannot read ${where} from SSM Parameter Store (${reason})`, {
      details: { setting: SETTING },
      cause: err,
    });
  } finally {
    own?.destroy();
  }
}
