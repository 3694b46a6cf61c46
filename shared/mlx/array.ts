// Array: one owned MLX handle. Release is deterministic: `free()`, `using`, or the scope
// (`tidy`) it was created in. A FinalizationRegistry only counts what was forgotten.
import type { Pointer } from "bun:ffi";
import { Dtype, itemSize, viewOf, type HostArray } from "./dtype.ts";
import { check, lib, out, readF64, readI32, readPtr, readU64 } from "./native.ts";

let live = 0;
let forgotten = 0;
const scopes: Set<MxArray>[] = [];

// Frees handles whose Array was garbage-collected without free(); tests assert it stays 0.
const safetyNet = new FinalizationRegistry<Pointer>((handle) => {
  forgotten++;
  live--;
  lib().sm_array_free(handle);
});

export class MxArray {
  #handle: Pointer | 0; // 0 once freed
  #shape: number[] | null = null;
  #dtype: Dtype | -1 = -1;

  /** Takes ownership of a fresh handle from the C ABI. */
  constructor(handle: Pointer) {
    if (!handle) throw new Error("bug: null MLX array handle");
    this.#handle = handle;
    live++;
    safetyNet.register(this, handle, this);
    scopes.at(-1)?.add(this);
  }

  get handle(): Pointer {
    if (!this.#handle) throw new Error("MLX array used after free");
    return this.#handle;
  }

  get freed(): boolean {
    return this.#handle === 0;
  }

  get shape(): number[] {
    if (this.#shape) return this.#shape;
    check(lib().sm_array_ndim(out, this.handle));
    const ndim = readI32();
    const dims = new Int32Array(Math.max(ndim, 1));
    check(lib().sm_array_shape(dims, this.handle));
    this.#shape = Array.from(dims.subarray(0, ndim));
    return this.#shape;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get dtype(): Dtype {
    if (this.#dtype === -1) {
      check(lib().sm_array_dtype(out, this.handle));
      this.#dtype = readI32() as Dtype;
    }
    return this.#dtype;
  }

  get size(): number {
    check(lib().sm_array_size(out, this.handle));
    return readU64();
  }

  get nbytes(): number {
    return this.size * itemSize(this.dtype);
  }

  /** The single element as a number (evaluates). */
  item(): number {
    check(lib().sm_array_item_f64(out, this.handle));
    return readF64();
  }

  /**
   * A copy of the evaluated, row-contiguous data (16-bit floats as raw Uint16). Always a copy: a
   * view of MLX's memory would dangle once MLX frees or reuses it, and readers such as the block
   * writer keep their bytes across awaits.
   */
  data(): HostArray {
    const n = this.size;
    const host = viewOf(this.dtype, new ArrayBuffer(n * itemSize(this.dtype)), 0, n);
    if (n) check(lib().sm_array_read(this.handle, host, host.byteLength));
    return host;
  }

  /** A float32 copy of the values, whatever the dtype or memory layout. */
  toFloat32(): Float32Array {
    const l = lib();
    check(l.sm_astype(out, this.handle, Dtype.float32));
    const cast = readPtr();
    try {
      check(l.sm_contiguous(out, cast));
      const dense = readPtr();
      try {
        check(l.sm_array_size(out, dense));
        const values = new Float32Array(readU64());
        if (values.length) check(l.sm_array_read(dense, values, values.byteLength));
        return values;
      } finally {
        l.sm_array_free(dense);
      }
    } finally {
      l.sm_array_free(cast);
    }
  }

  /** Drops this handle. Safe to call twice; any later use throws. */
  free(): void {
    if (!this.#handle) return;
    safetyNet.unregister(this);
    lib().sm_array_free(this.#handle);
    this.#handle = 0;
    live--;
    for (const s of scopes) s.delete(this);
  }

  [Symbol.dispose](): void {
    this.free();
  }
}

export type Tree = MxArray | readonly Tree[] | { readonly [k: string]: Tree } | number | string | boolean | null | undefined;

function collect(value: unknown, into: Set<MxArray>): void {
  if (value instanceof MxArray) into.add(value);
  else if (Array.isArray(value)) for (const v of value) collect(v, into);
  else if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into);
  }
}

/**
 * Runs `fn` and frees every MlxArray created inside it except those it returns (found in
 * arrays and plain objects), which move to the enclosing scope. `fn` must be synchronous.
 * @example const y = tidy(() => add(mul(x, 2), 1)); // the product is freed, y kept
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<MxArray>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    for (const a of scope) a.free();
    throw e;
  } finally {
    scopes.pop();
  }
  const kept = new Set<MxArray>();
  collect(result, kept);
  for (const a of scope) if (!kept.has(a)) a.free();
  const parent = scopes.at(-1);
  if (parent) for (const a of kept) parent.add(a);
  return result;
}

/** Detaches `a` from the scopes it is tracked in: the caller now owns it. */
export function keep<T extends MxArray>(a: T): T {
  for (const s of scopes) s.delete(a);
  return a;
}

/** Frees every array in a tree of arrays. */
export function dispose(value: unknown): void {
  const all = new Set<MxArray>();
  collect(value, all);
  for (const a of all) a.free();
}

/** Live handle counts: `live` owned now, `forgotten` reclaimed by GC (a leak if non-zero). */
export function handleCounts(): { live: number; forgotten: number } {
  return { live, forgotten };
}

