/**
 * A CPU-heavy example: iterated SHA-256 over the row's values. `options.rounds` (default 1000)
 * sets the cost per row; the result is the first 16 hex digits of the last digest.
 */
import { createHash } from "node:crypto";

export const columns = ["score"];

export default function score(row, options) {
  const rounds = options?.rounds ?? 1000;
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new Error(
      `score: options.rounds must be a positive integer, got ${JSON.stringify(rounds)}`,
    );
  }
  // Dates serialise as ISO strings, so the score is stable across threads and machines.
  let digest = createHash("sha256")
    .update(JSON.stringify(Object.values(row)))
    .digest();
  for (let n = 1; n < rounds; n++) digest = createHash("sha256").update(digest).digest();
  return { score: digest.toString("hex").slice(0, 16) };
}
