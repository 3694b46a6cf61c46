// Stop strings across token boundaries: text that might still become a stop string is held
// back until the next token decides it.

export class StopMatcher {
  #held = "";

  constructor(readonly stops: readonly string[]) {}

  /**
   * Feeds newly decoded text. Returns the text safe to emit now and, if a stop string
   * completed, which one (the emitted text then ends right before it).
   */
  push(text: string): { emit: string; stop: string | null } {
    const buf = this.#held + text;
    let first = -1;
    let hit: string | null = null;
    for (const s of this.stops) {
      const at = s ? buf.indexOf(s) : -1;
      if (at !== -1 && (first === -1 || at < first)) {
        first = at;
        hit = s;
      }
    }
    if (hit !== null) {
      this.#held = "";
      return { emit: buf.slice(0, first), stop: hit };
    }
    const keep = this.#partialSuffix(buf);
    this.#held = buf.slice(buf.length - keep);
    return { emit: buf.slice(0, buf.length - keep), stop: null };
  }

  /** Whatever was held back, when generation ends for another reason. */
  flush(): string {
    const rest = this.#held;
    this.#held = "";
    return rest;
  }

  // The longest suffix of `buf` that is a proper prefix of some stop string.
  #partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
