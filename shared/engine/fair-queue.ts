// Waiting requests, FIFO within a tenant and round-robin across tenants: the next request
// comes from the tenant served least recently, so one tenant's flood waits behind another
// tenant's single request instead of in front of it.

type Entry<T> = { item: T; order: number };

export class FairQueue<T> {
  readonly #queues = new Map<string, Entry<T>[]>();
  readonly #lastServed = new Map<string, number>();
  #served = 0;
  #arrivals = 0;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(tenant: string, item: T): void {
    let q = this.#queues.get(tenant);
    if (!q) this.#queues.set(tenant, (q = []));
    q.push({ item, order: this.#arrivals++ });
    this.#size++;
  }

  /** The request take() would return, left in place. */
  peek(): T | undefined {
    const t = this.#nextTenant();
    return t === null ? undefined : this.#queues.get(t)![0].item;
  }

  take(): T | undefined {
    const t = this.#nextTenant();
    if (t === null) return undefined;
    const q = this.#queues.get(t)!;
    const { item } = q.shift()!;
    if (!q.length) this.#queues.delete(t);
    this.#size--;
    this.#lastServed.set(t, ++this.#served);
    // Tenants come and go; remembering only those still waiting would let a flood jump the queue.
    if (this.#lastServed.size > 10_000) for (const k of this.#lastServed.keys()) if (!this.#queues.has(k)) this.#lastServed.delete(k);
    return item;
  }

  /** Removes a waiting request (cancelled before it started); false if it is not here. */
  remove(tenant: string, item: T): boolean {
    const q = this.#queues.get(tenant);
    const i = q?.findIndex((e) => e.item === item) ?? -1;
    if (!q || i < 0) return false;
    q.splice(i, 1);
    if (!q.length) this.#queues.delete(tenant);
    this.#size--;
    return true;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (const q of this.#queues.values()) for (const e of q) yield e.item;
  }

  // Least recently served tenant first (never served counts as longest ago); ties by arrival.
  #nextTenant(): string | null {
    let best: string | null = null;
    let bestServed = 0;
    let bestOrder = 0;
    for (const [t, q] of this.#queues) {
      const served = this.#lastServed.get(t) ?? 0;
      if (best === null || served < bestServed || (served === bestServed && q[0].order < bestOrder)) {
        best = t;
        bestServed = served;
        bestOrder = q[0].order;
      }
    }
    return best;
  }
}
