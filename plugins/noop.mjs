/**
 * Does nothing and adds no columns: measures the pipeline itself (queue, S3, threads, merge)
 * in the benchmark, with no per-row cost.
 */
export const columns = [];

export default function noop() {
  return {};
}
