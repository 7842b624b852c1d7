/**
 * `shardfleet token create`: a new random token and the line that stores it (its SHA-256, the
 * tenant, the role and caps). The token itself is printed once and kept nowhere.
 */
import { randomBytes } from "node:crypto";
import { roles, tenantNameSchema, tokenLine } from "../../shared/schemas/tokens.ts";
import { CliError, EXIT } from "../cli-error.ts";

export function mintToken(opts: {
  tenant: string;
  role: string;
  maxOperations?: number;
  maxInstances?: number;
  maxHourlyUsd?: number;
}): { token: string; line: string } {
  const tenant = tenantNameSchema.safeParse(opts.tenant);
  if (!tenant.success) {
    throw new CliError(`--tenant ${tenant.error.issues[0]?.message}`, EXIT.usage);
  }
  const role = roles.find((r) => r === opts.role);
  if (!role) throw new CliError(`--role must be one of ${roles.join(", ")}`, EXIT.usage);
  // 32 random bytes as hex: 64 characters, sendable in a header as is.
  const token = randomBytes(32).toString("hex");
  const caps = [
    opts.maxOperations === undefined ? "" : ` max-operations=${opts.maxOperations}`,
    opts.maxInstances === undefined ? "" : ` max-instances=${opts.maxInstances}`,
    opts.maxHourlyUsd === undefined ? "" : ` max-hourly-usd=${opts.maxHourlyUsd}`,
  ].join("");
  return { token, line: `${tokenLine({ tenant: tenant.data, role, token })}${caps}` };
}
