// The cache protocol a model's attention sees, and the plain per-sequence KV cache.
// The block pool and the batch engine provide their own LayerCache over the same protocol.
import { add, arange, concatenate, type Dtype, greater, keep, less, logicalAnd, type MxArray, reshape, slice, sliceUpdate, subtract, tidy, zeros } from "../mlx/index.ts";

/** What attention needs from a layer's cache: positions, storage, and the mask. */
export interface LayerCache {
  /** Tokens already cached before the current step (the rotary offset): one per sequence or shared. */
  readonly ropeOffset: number | MxArray;
  /** Appends k, v (B, Hkv, L, D) and returns every cached key and value, new ones included. */
  updateAndFetch(k: MxArray, v: MxArray): [MxArray, MxArray];
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

/** A growing K/V store for one sequence, allocated in steps so appends are in-place writes. */
export class KVCache implements LayerCache {
  static readonly step = 256;
  #keys: MxArray | null = null;
  #values: MxArray | null = null;
  offset = 0;

  /**
   * A cache over `keys`/`values` (1, H, capacity, D) whose first `tokens` positions are filled
   * (takes ownership). Spare capacity lets the next tokens be written in place.
   */
  static fromPrefix(keys: MxArray, values: MxArray, tokens = keys.shape[2]): KVCache {
    if (tokens > keys.shape[2]) throw new RangeError(`a prefix of ${tokens} tokens in a buffer of ${keys.shape[2]}`);
    const c = new KVCache();
    c.#keys = keep(keys);
    c.#values = keep(values);
    c.offset = tokens;
    return c;
  }

  get ropeOffset(): number {
    return this.offset;
  }

  updateAndFetch(k: MxArray, v: MxArray): [MxArray, MxArray] {
    const [B, H, L, D] = k.shape; // (B, Hkv, L, D)
    const Dv = v.shape[3];
    const prev = this.offset;
    if (!this.#keys || prev + L > this.#keys.shape[2]) {
      const grow = Math.ceil((prev + L) / KVCache.step) * KVCache.step - (this.#keys?.shape[2] ?? 0);
      this.#keys = this.#grow(this.#keys, [B, H, grow, D], k.dtype);
      this.#values = this.#grow(this.#values, [B, H, grow, Dv], v.dtype);
    }
    this.offset += L;
    this.#keys = this.#write(this.#keys, k, prev);
    this.#values = this.#write(this.#values!, v, prev);
    return [
      slice(this.#keys, [0, 0, 0, 0], [B, H, this.offset, D]),
      slice(this.#values!, [0, 0, 0, 0], [B, H, this.offset, Dv]),
    ];
  }

  makeMask(L: number, window: number | null): "causal" | MxArray | null {
    if (window !== null && this.offset + L > window) return causalMask(L, this.offset, window);
    return L > 1 ? "causal" : null;
  }

  #grow(old: MxArray | null, shape: number[], dtype: Dtype): MxArray {
    const extra = zeros(shape, dtype);
    if (!old) return keep(extra);
    const joined = keep(concatenate([slice(old, [0, 0, 0, 0], [old.shape[0], old.shape[1], this.offset, old.shape[3]]), extra], 2));
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
    return this.#keys && this.#values ? [this.#keys, this.#values] : [];
  }

  /** The cached keys and values (B, Hkv, offset, D), for saving into blocks. */
  state(): [MxArray, MxArray] | null {
    if (!this.#keys || !this.#values) return null;
    const [B, H, , D] = this.#keys.shape;
    return [slice(this.#keys, [0, 0, 0, 0], [B, H, this.offset, D]), slice(this.#values, [0, 0, 0, 0], [B, H, this.offset, this.#values.shape[3]])];
  }

  /** Hands its buffers (B, H, capacity, D) and the positions they hold to the caller, and empties. */
  release(): { keys: MxArray; values: MxArray; tokens: number } | null {
    if (!this.#keys || !this.#values) return null;
    const r = { keys: this.#keys, values: this.#values, tokens: this.offset };
    this.#keys = this.#values = null;
    this.offset = 0;
    return r;
  }

  free(): void {
    this.#keys?.free();
    this.#values?.free();
    this.#keys = this.#values = null;
    this.offset = 0;
  }
}
