/**
 * The simulator's event queue: a binary min-heap on (time, sequence) kept in typed arrays, so
 * pushing and popping an event allocates nothing (the arrays double when full). Ties pop in
 * push order, which keeps a seeded run deterministic.
 */
export class EventQueue {
  #time = new Float64Array(1024);
  #seq = new Float64Array(1024);
  #kind = new Uint8Array(1024);
  #a = new Int32Array(1024);
  #b = new Int32Array(1024);
  #size = 0;
  #nextSeq = 0;
  /** Filled by `pop`: the popped event's fields (read them before the next pop). */
  time = 0;
  kind = 0;
  a = 0;
  b = 0;

  get size(): number {
    return this.#size;
  }

  push(time: number, kind: number, a = 0, b = 0): void {
    if (this.#size === this.#time.length) this.#grow();
    let i = this.#size++;
    const seq = this.#nextSeq++;
    // Sift up: move parents down until the slot for the new event is found.
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.#time[p]! < time || (this.#time[p] === time && this.#seq[p]! < seq)) break;
      this.#move(p, i);
      i = p;
    }
    this.#set(i, time, seq, kind, a, b);
  }

  /** Pops the earliest event into `time`/`kind`/`a`/`b`; false when empty. */
  pop(): boolean {
    if (this.#size === 0) return false;
    this.time = this.#time[0]!;
    this.kind = this.#kind[0]!;
    this.a = this.#a[0]!;
    this.b = this.#b[0]!;
    const last = --this.#size;
    if (last === 0) return true;
    const t = this.#time[last]!;
    const s = this.#seq[last]!;
    const k = this.#kind[last]!;
    const a = this.#a[last]!;
    const b = this.#b[last]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      const c = r < last && this.#less(r, l) ? r : l;
      if (t < this.#time[c]! || (t === this.#time[c] && s < this.#seq[c]!)) break;
      this.#move(c, i);
      i = c;
    }
    this.#set(i, t, s, k, a, b);
    return true;
  }

  #less(x: number, y: number): boolean {
    const tx = this.#time[x]!;
    const ty = this.#time[y]!;
    return tx < ty || (tx === ty && this.#seq[x]! < this.#seq[y]!);
  }

  #move(from: number, to: number): void {
    this.#time[to] = this.#time[from]!;
    this.#seq[to] = this.#seq[from]!;
    this.#kind[to] = this.#kind[from]!;
    this.#a[to] = this.#a[from]!;
    this.#b[to] = this.#b[from]!;
  }

  #set(i: number, time: number, seq: number, kind: number, a: number, b: number): void {
    this.#time[i] = time;
    this.#seq[i] = seq;
    this.#kind[i] = kind;
    this.#a[i] = a;
    this.#b[i] = b;
  }

  #grow(): void {
    const n = this.#time.length * 2;
    const grow = <T extends Float64Array | Uint8Array | Int32Array>(
      old: T,
      make: (n: number) => T,
    ) => {
      const next = make(n);
      next.set(old as never);
      return next;
    };
    this.#time = grow(this.#time, (n) => new Float64Array(n));
    this.#seq = grow(this.#seq, (n) => new Float64Array(n));
    this.#kind = grow(this.#kind, (n) => new Uint8Array(n));
    this.#a = grow(this.#a, (n) => new Int32Array(n));
    this.#b = grow(this.#b, (n) => new Int32Array(n));
  }
}
