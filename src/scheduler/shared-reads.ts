/**
 * Reads shared by every caller asking for the same key within `ttlMs` of the read's start: the
 * API's status polls (console, `watch`, scripts) read S3 once a `ttlMs` per operation, however
 * many pollers there are. A read is not cancelled by one caller's signal (others may wait on
 * it); a failed read is not kept, so the next caller tries again. Time comes from the caller
 * (the service's clock), so a fake clock drives it in tests.
 */
export class SharedReads<T> {
  readonly #ttlMs: number;
  readonly #cache = new Map<string, { at: number; value: Promise<T> }>();

  /** @param options.ttlMs how long a read answers later callers (0: every call reads). */
  constructor(options: { ttlMs: number }) {
    this.#ttlMs = options.ttlMs;
  }

  /** The value read for `key` since `now - ttlMs`, if there is one (no read). */
  peek(key: string, now: number): Promise<T> | undefined {
    const hit = this.#cache.get(key);
    return hit && now - hit.at < this.#ttlMs && now >= hit.at ? hit.value : undefined;
  }

  /** The value read for `key` since `now - ttlMs`, else `load()`'s, shared from now on. */
  read(key: string, now: number, load: () => Promise<T>): Promise<T> {
    const hit = this.peek(key, now);
    if (hit) return hit;
    // Stale entries go as new ones come: the map holds only keys read within the last ttlMs.
    for (const [k, entry] of this.#cache) {
      if (now - entry.at >= this.#ttlMs) this.#cache.delete(k);
    }
    const entry = { at: now, value: load() };
    this.#cache.set(key, entry);
    entry.value.catch(() => {
      if (this.#cache.get(key) === entry) this.#cache.delete(key);
    });
    return entry.value;
  }

  /** The next caller reads afresh (this process changed what `key` shows). */
  forget(key: string): void {
    this.#cache.delete(key);
  }
}
