/**
 * How the policy writes amounts and times into the reasons it gives (decision reasons, waiting
 * and failure messages). A leaf shared by the sections.
 */

export { formatUsdAmount as usd } from "../../../shared/cost-format.ts";

export function seconds(msValue: number): string {
  return `${Math.round(msValue / 1000)} s`;
}

export function iso(msValue: number): string {
  return new Date(msValue).toISOString();
}
