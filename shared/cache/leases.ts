// One turn at a time per agent: a lease with a TTL, so an abandoned request cannot hold an
// agent forever. A second request waits up to a bound, then gets AgentBusyError (HTTP 409).

export class AgentBusyError extends Error {
  override name = "AgentBusyError";
}

export type Lease = { release(): void };

type Holder = { expires: number; waiters: (() => void)[] };

export class Leases {
  #held = new Map<string, Holder>();

  constructor(readonly ttlMs = 10 * 60_000) {}

  /** Resolves once `key` is free (or its holder's lease expired); rejects after `waitMs`. */
  async acquire(key: string, waitMs: number): Promise<Lease> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const h = this.#held.get(key);
      if (!h || h.expires <= Date.now()) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new AgentBusyError("another request is running on this agent; retry when it finishes");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, h.expires - Date.now()));
        h.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const holder: Holder = { expires: Date.now() + this.ttlMs, waiters: [] };
    this.#held.set(key, holder);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        if (this.#held.get(key) === holder) this.#held.delete(key);
        for (const w of holder.waiters) w();
      },
    };
  }

  isHeld(key: string): boolean {
    const h = this.#held.get(key);
    return !!h && h.expires > Date.now();
  }
}
