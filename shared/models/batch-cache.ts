// One layer's K/V for a batch of sequences of different lengths, decoded together. Rows are
// left-padded: every row's tokens end at the same column, so each step appends all rows'
// next tokens with one in-place write. Padding is zeros and the mask hides it. Rows join
// and leave with one copy of the buffer; steps in between never copy.
import {
  arange, array, concatenate, contiguous, Dtype, dispose, greater, greaterEqual, keep, lessEqual, logicalAnd,
  type MxArray, reshape, slice, sliceUpdate, subtract, take, tidy, zeros,
} from "../mlx/index.ts";
import type { LayerCache } from "./cache.ts";

export class BatchKVCache implements LayerCache {
  static readonly step = 256;
  #keys: MxArray | null = null; // (B, H, capacity, D)
  #values: MxArray | null = null;
  /** Tokens each row holds; row b's occupy columns [end - lengths[b], end). */
  #lengths: number[] = [];
  #end = 0;
  #offsets: MxArray | null = null;

  get rows(): number {
    return this.#lengths.length;
  }

  get lengths(): readonly number[] {
    return this.#lengths;
  }

  /** The column the next token of every row is written to. */
  get end(): number {
    return this.#end;
  }

  get capacity(): number {
    return this.#keys?.shape[2] ?? 0;
  }

  /** Each row's own position: int32 (B,). */
  get ropeOffset(): MxArray {
    this.#offsets ??= keep(array(Int32Array.from(this.#lengths), [this.#lengths.length], Dtype.int32));
    return this.#offsets;
  }

  // Columns before this are padding in every row: attention skips them.
  get #start(): number {
    return this.#end - Math.max(...this.#lengths);
  }

  updateAndFetch(k: MxArray, v: MxArray): [MxArray, MxArray] {
    const [B, H, L, D] = k.shape; // (B, Hkv, L, D)
    const Dv = v.shape[3];
    if (!this.#keys || !this.#values || B !== this.rows) throw new Error(`bug: batch cache has ${this.rows} rows, got ${B}`);
    const at = this.#end;
    if (at + L > this.capacity) this.#resize(this.#start, roundUp(at + L - this.#start));
    const start = this.#start;
    const end = this.#end;
    this.#keys = write(this.#keys, k, end);
    this.#values = write(this.#values, v, end);
    this.#end += L;
    this.#lengths = this.#lengths.map((n) => n + L);
    this.#offsets?.free();
    this.#offsets = null;
    return [
      slice(this.#keys, [0, 0, start, 0], [B, H, this.#end, D]),
      slice(this.#values, [0, 0, start, 0], [B, H, this.#end, Dv]),
    ];
  }

  /**
   * Boolean (B, 1, L, S) over the keys updateAndFetch will return: each row sees its own tokens
   * up to the query's position (and within `window` of it), never another row's padding.
   */
  makeMask(L: number, window: number | null): "causal" | MxArray | null {
    const start = this.#start;
    const end = this.#end;
    const padded = this.#lengths.some((n) => n !== end - start);
    const windowed = window !== null && end - start + L > window;
    if (!padded && !windowed) return L > 1 ? "causal" : null;
    return tidy(() => {
      const B = this.rows;
      const cols = reshape(arange(start, end + L), [1, 1, 1, end + L - start]);
      const q = reshape(arange(end, end + L), [1, 1, L, 1]);
      const first = array(Int32Array.from(this.#lengths.map((n) => end - n)), [B, 1, 1, 1], Dtype.int32);
      let mask = logicalAnd(greaterEqual(cols, first), lessEqual(cols, q));
      if (window !== null) mask = logicalAnd(mask, greater(cols, subtract(q, window)));
      return mask;
    });
  }

  /** Adds a row holding `keys`/`values` (1, H, n, D) as its first n tokens (copied; the caller keeps its arrays). */
  add(keys: MxArray, values: MxArray): void {
    const n = keys.shape[2];
    if (n < 1) throw new RangeError("a batch row needs at least one token");
    if (!this.#keys || !this.#values) {
      const cap = roundUp(n + 1);
      [this.#keys, this.#values] = tidy(() => [padColumns(keys, 0, cap - n), padColumns(values, 0, cap - n)]).map(keep);
      this.#lengths = [n];
      this.#end = n;
      this.#invalidate();
      return;
    }
    // The widest row sets the end column: the others shift right by the difference.
    const start = this.#start;
    const end = Math.max(this.#end, start + n);
    const shift = end - this.#end;
    const cap = Math.max(this.capacity - start + shift, roundUp(end - start + 1));
    const join = (old: MxArray, row: MxArray) => {
      const kept = slice(old, [0, 0, start, 0], [old.shape[0], old.shape[1], this.#end, old.shape[3]]);
      return concatenate([padColumns(kept, shift, cap - (end - start)), padColumns(row, end - start - n, cap - (end - start))], 0);
    };
    const next = tidy(() => [join(this.#keys!, keys), join(this.#values!, values)]).map(keep);
    dispose([this.#keys, this.#values]);
    [this.#keys, this.#values] = next;
    this.#lengths.push(n);
    this.#end = end - start;
    this.#invalidate();
  }

  /**
   * Takes `keys`/`values` (1, H, capacity, D) whose first n columns hold a sequence as the only
   * row of an empty batch, without copying (takes ownership).
   */
  adopt(keys: MxArray, values: MxArray, n: number): void {
    if (this.rows) throw new Error(`bug: adopt into a batch of ${this.rows} rows`);
    if (n < 1 || n > keys.shape[2]) throw new RangeError(`a row of ${n} tokens in a buffer of ${keys.shape[2]}`);
    this.#keys = keep(keys);
    this.#values = keep(values);
    this.#lengths = [n];
    this.#end = n;
    this.#invalidate();
  }

  /**
   * Row `row`'s keys and values without padding, (1, H, n, D) each: views of the batch's buffers
   * (no copy) that the caller frees; they stay valid when the batch changes.
   */
  extract(row: number): [MxArray, MxArray] {
    if (!this.#keys || !this.#values || row < 0 || row >= this.rows) throw new RangeError(`no row ${row} in a batch of ${this.rows}`);
    const from = this.#end - this.#lengths[row];
    const cut = (a: MxArray) => slice(a, [row, 0, from, 0], [row + 1, a.shape[1], this.#end, a.shape[3]]);
    return [cut(this.#keys), cut(this.#values)];
  }

  /** Removes `rows` (indices); the rest keep their order. Padding no remaining row needs is dropped. */
  remove(rows: readonly number[]): void {
    const gone = new Set(rows);
    const keptRows = this.#lengths.map((_, i) => i).filter((i) => !gone.has(i));
    if (keptRows.length === this.rows) return;
    if (!keptRows.length) {
      this.free();
      return;
    }
    this.#lengths = keptRows.map((i) => this.#lengths[i]);
    const start = this.#start;
    const idx = array(Int32Array.from(keptRows), [keptRows.length], Dtype.int32);
    const cut = (a: MxArray) => contiguous(slice(take(a, idx, 0), [0, 0, start, 0], [keptRows.length, a.shape[1], a.shape[2], a.shape[3]]));
    const next = tidy(() => [cut(this.#keys!), cut(this.#values!)]).map(keep);
    idx.free();
    dispose([this.#keys, this.#values]);
    [this.#keys, this.#values] = next;
    this.#end -= start;
    this.#invalidate();
  }

  arrays(): MxArray[] {
    return this.#keys && this.#values ? [this.#keys, this.#values] : [];
  }

  /** Bytes held, padding and spare capacity included. */
  get nbytes(): number {
    return (this.#keys?.nbytes ?? 0) + (this.#values?.nbytes ?? 0);
  }

  free(): void {
    dispose([this.#keys, this.#values, this.#offsets]);
    this.#keys = this.#values = this.#offsets = null;
    this.#lengths = [];
    this.#end = 0;
  }

  // Copies the columns [from, end) into a buffer of `cap` columns (on growth).
  #resize(from: number, cap: number): void {
    const grow = (a: MxArray) => padColumns(slice(a, [0, 0, from, 0], [a.shape[0], a.shape[1], this.#end, a.shape[3]]), 0, cap - (this.#end - from));
    const next = tidy(() => [grow(this.#keys!), grow(this.#values!)]).map(keep);
    dispose([this.#keys, this.#values]);
    [this.#keys, this.#values] = next;
    this.#end -= from;
  }

  #invalidate(): void {
    this.#offsets?.free();
    this.#offsets = null;
  }
}

const roundUp = (n: number) => Math.ceil(n / BatchKVCache.step) * BatchKVCache.step;

// x (B, H, n, D) with `before` zero columns in front and `after` behind.
function padColumns(x: MxArray, before: number, after: number): MxArray {
  const [B, H, , D] = x.shape;
  const parts = [...(before ? [zeros([B, H, before, D], x.dtype)] : []), x, ...(after ? [zeros([B, H, after, D], x.dtype)] : [])];
  return parts.length === 1 ? contiguous(x) : concatenate(parts, 2);
}

// Dropping our handle to the old buffer before evaluation lets MLX write in place.
function write(store: MxArray, x: MxArray, at: number): MxArray {
  const [B, H, L, D] = x.shape;
  const next = keep(sliceUpdate(store, x, [0, 0, at, 0], [B, H, at + L, D]));
  store.free();
  return next;
}
