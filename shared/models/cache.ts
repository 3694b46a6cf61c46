// The cache protocol a model's attention sees, and the plain per-sequence KV cache.
// The block pool and the batch engine provide their own LayerCache over the same protocol.
import {
  add, arange, concatenate, contiguous, type Dtype, greater, keep, type KV, less, logicalAnd, type MxArray, reshape, slice, sliceUpdate, subtract, tidy, zeros,
} from "../mlx/index.ts";

/** What attention needs from a layer's cache: positions, storage, and the mask. */
export interface LayerCache {
  /** Tokens already cached before the current step (the rotary offset): one per sequence or shared. */
  readonly ropeOffset: number | MxArray;
  /** Appends k, v (B, Hkv, L, D) and returns every cached key and value, new ones included (one array, or segments along the sequence). */
  updateAndFetch(k: MxArray, v: MxArray): [KV, KV];
  /** The attention mask for `L` new queries, for a layer attending over `window` tokens (or all). */
  makeMask(L: number, window: number | null): "causal" | MxArray | null;
  /** The stored arrays, to evaluate after a prefill chunk so its graph is not carried forward. */
  arrays(): MxArray[];
  /** Releases the cached arrays. */
  free(): void;
}

/**
 * Causal mask for L queries at positions offset..offset+L-1 over offset+L keys, optionally
 * limited to the last `window` keys per query: true where attention is allowed.
 */
export function causalMask(L: number, offset: number, window: number | null): MxArray {
  return tidy(() => {
    const q = reshape(arange(offset, offset + L), [L, 1]);
    const k = reshape(arange(0, offset + L), [1, offset + L]);
    const visible = less(k, add(q, 1));
    if (window === null) return visible;
    return logicalAnd(visible, greater(k, subtract(q, window)));
  });
}

/**
 * A growing K/V store for one sequence, allocated in steps so appends are in-place writes. It may
 * start from a cached prefix held as segments (the pool's blocks, borrowed): attention reads them
 * in place, and only the tokens after them are written into the cache's own buffer.
 */
export class KVCache implements LayerCache {
  static readonly step = 256;
  #prefix: { keys: MxArray[]; values: MxArray[]; tokens: number } | null = null;
  // The cache's own buffer: positions prefix.tokens .. offset - 1, in steps of `step` columns.
  #keys: MxArray | null = null;
  #values: MxArray | null = null;
  offset = 0;

  /**
   * A cache over a prefix of `tokens` given as segments along the sequence, (1, H, n_i, D) each.
   * The segments stay the caller's: they must outlive the cache (freeing it leaves them alone).
   */
  static fromSegments(keys: MxArray[], values: MxArray[], tokens = keys.reduce((n, k) => n + k.shape[2], 0)): KVCache {
    if (!keys.length || keys.length !== values.length) throw new RangeError(`a prefix of ${keys.length} key and ${values.length} value segments`);
    const c = new KVCache();
    c.#prefix = { keys, values, tokens };
    c.offset = tokens;
    return c;
  }

  get ropeOffset(): number {
    return this.offset;
  }

  updateAndFetch(k: MxArray, v: MxArray): [KV, KV] {
    const [B, H, L, D] = k.shape; // (B, Hkv, L, D)
    const Dv = v.shape[3];
    const own = this.offset - (this.#prefix?.tokens ?? 0);
    if (!this.#keys || own + L > this.#keys.shape[2]) {
      const grow = Math.ceil((own + L) / KVCache.step) * KVCache.step - (this.#keys?.shape[2] ?? 0);
      this.#keys = this.#grow(this.#keys, [B, H, grow, D], k.dtype, own);
      this.#values = this.#grow(this.#values, [B, H, grow, Dv], v.dtype, own);
    }
    this.offset += L;
    this.#keys = this.#write(this.#keys, k, own);
    this.#values = this.#write(this.#values!, v, own);
    const keys = slice(this.#keys, [0, 0, 0, 0], [B, H, own + L, D]);
    const values = slice(this.#values!, [0, 0, 0, 0], [B, H, own + L, Dv]);
    return this.#prefix ? [[...this.#prefix.keys, keys], [...this.#prefix.values, values]] : [keys, values];
  }

  makeMask(L: number, window: number | null): "causal" | MxArray | null {
    if (window !== null && this.offset + L > window) return causalMask(L, this.offset, window);
    return L > 1 ? "causal" : null;
  }

  #grow(old: MxArray | null, shape: number[], dtype: Dtype, used: number): MxArray {
    const extra = zeros(shape, dtype);
    if (!old) return keep(extra);
    const joined = keep(concatenate([slice(old, [0, 0, 0, 0], [old.shape[0], old.shape[1], used, old.shape[3]]), extra], 2));
    old.free();
    return joined;
  }

  // Dropping our handle to the old buffer before evaluation lets MLX write in place.
  #write(store: MxArray, x: MxArray, at: number): MxArray {
    const [B, H, L, D] = x.shape;
    const next = keep(sliceUpdate(store, x, [0, 0, at, 0], [B, H, at + L, D]));
    store.free();
    return next;
  }

  arrays(): MxArray[] {
    const own = this.#keys && this.#values ? [this.#keys, this.#values] : [];
    return this.#prefix ? [...this.#prefix.keys, ...this.#prefix.values, ...own] : own;
  }

  /** The cached keys and values (B, Hkv, offset, D) as one array each, for saving into blocks or joining a batch. */
  state(): [MxArray, MxArray] | null {
    return tidy(() => {
      const joined = this.#joined();
      if (!joined) return null;
      const [B, H, , D] = joined.keys.shape;
      return [slice(joined.keys, [0, 0, 0, 0], [B, H, this.offset, D]), slice(joined.values, [0, 0, 0, 0], [B, H, this.offset, joined.values.shape[3]])] as [MxArray, MxArray];
    });
  }

  /**
   * Hands its buffers (B, H, capacity, D) and the positions they hold to the caller, and empties.
   * A prefix held as segments is copied into one buffer with the own buffer's spare room here.
   */
  release(): { keys: MxArray; values: MxArray; tokens: number } | null {
    const joined = this.#joined();
    if (!joined) return null;
    const r = { keys: keep(joined.keys), values: keep(joined.values), tokens: this.offset };
    if (this.#prefix) this.free();
    this.#keys = this.#values = null;
    this.offset = 0;
    return r;
  }

  // Prefix segments and the own buffer (its spare room included) as one array each (a copy when there is a prefix).
  #joined(): { keys: MxArray; values: MxArray } | null {
    if (!this.#prefix) return this.#keys && this.#values ? { keys: this.#keys, values: this.#values } : null;
    const p = this.#prefix;
    const join = (xs: MxArray[], own: MxArray | null) => (own ? concatenate([...xs, own], 2) : xs.length === 1 ? contiguous(xs[0]) : concatenate(xs, 2));
    return { keys: join(p.keys, this.#keys), values: join(p.values, this.#values) };
  }

  free(): void {
    this.#prefix = null;
    this.#keys?.free();
    this.#values?.free();
    this.#keys = this.#values = null;
    this.offset = 0;
  }
}
