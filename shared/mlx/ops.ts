// MLX core ops as plain functions over MxArray. Each returns a new array owned by the
// current scope (see tidy). Numbers stand for scalars of the other operand's dtype.
import { type Pointer, ptr } from "bun:ffi";
import { MxArray } from "./array.ts";
import { Dtype, isFloating, itemSize, type HostArray } from "./dtype.ts";
import { check, lib, out, readPtr } from "./native.ts";

export type Operand = MxArray | number;

/** Runs one C ABI call that writes an array handle to `out` and wraps it. */
export function made(status: number): MxArray {
  check(status);
  return new MxArray(readPtr());
}

const i32s = (v: readonly number[]) => new Int32Array(v.length ? v : [0]);

/** Handles packed for `const sm_array*` arguments. */
export function handles(arrays: readonly MxArray[]): BigUint64Array {
  return BigUint64Array.from(arrays.map((a) => BigInt(a.handle)));
}

function hostDtype(data: HostArray): Dtype {
  if (data instanceof Float32Array) return Dtype.float32;
  if (data instanceof Float64Array) return Dtype.float64;
  if (data instanceof Int32Array) return Dtype.int32;
  if (data instanceof Uint32Array) return Dtype.uint32;
  if (data instanceof Int8Array) return Dtype.int8;
  if (data instanceof Uint8Array) return Dtype.uint8;
  if (data instanceof Int16Array) return Dtype.int16;
  if (data instanceof Uint16Array) return Dtype.uint16;
  if (data instanceof BigInt64Array) return Dtype.int64;
  return Dtype.uint64;
}

/**
 * An array copied from host memory. Plain number lists become float32 unless `dtype` says
 * otherwise; a Uint16Array with dtype float16/bfloat16 is taken as raw 16-bit floats.
 * @example array([1, 2, 3, 4], [2, 2])
 */
export function array(data: HostArray | readonly number[], shape?: readonly number[], dtype?: Dtype): MxArray {
  let host: HostArray;
  if (Array.isArray(data) || !ArrayBuffer.isView(data)) {
    const d = dtype ?? Dtype.float32;
    host = d === Dtype.int32 ? Int32Array.from(data as number[]) : d === Dtype.uint32 ? Uint32Array.from(data as number[]) : Float32Array.from(data as number[]);
    const typed = array(host, shape ?? [host.length]);
    if (d === hostDtype(host)) return typed;
    const cast = astype(typed, d);
    typed.free();
    return cast;
  }
  host = data as HostArray;
  const d = dtype ?? hostDtype(host);
  const dims = shape ?? [host.length];
  const n = dims.reduce((a, b) => a * b, 1);
  if (n !== host.length) throw new RangeError(`shape [${dims}] needs ${n} elements, got ${host.length}`);
  const bytes = host.length ? host : new Uint8Array(8);
  return made(lib().sm_array_from_data(out, ptr(bytes), i32s(dims), dims.length, d));
}

/**
 * Arrays of one dtype and rank from host data, copied on the CPU kernels' threads: for many
 * large arrays at once (a KV block file's layers), where the copies into fresh memory dominate.
 */
export function arraysFromData(parts: readonly HostArray[], shapes: readonly (readonly number[])[], dtype: Dtype): MxArray[] {
  const n = parts.length;
  if (n === 0) return [];
  const ndim = shapes[0].length;
  const dims = new Int32Array(n * ndim);
  parts.forEach((p, i) => {
    const s = shapes[i];
    if (s.length !== ndim) throw new RangeError(`arraysFromData takes arrays of one rank: ${s.length} and ${ndim}`);
    if (p.length !== s.reduce((a, b) => a * b, 1) || p.BYTES_PER_ELEMENT !== itemSize(dtype)) throw new RangeError(`array ${i}: shape [${s}] does not fit ${p.length} elements of ${Dtype[dtype]}`);
    dims.set(s, i * ndim);
  });
  const pointers = BigUint64Array.from(parts, (p) => BigInt(p.length ? ptr(p) : ptr(new Uint8Array(8))));
  const slots = new BigUint64Array(n);
  check(lib().sm_arrays_from_data(slots, n, pointers, dims, ndim, dtype));
  return Array.from(slots, (h) => new MxArray(Number(h) as Pointer));
}

export function scalar(value: number, dtype = Dtype.float32): MxArray {
  return made(lib().sm_array_scalar(out, value, dtype));
}

export function zeros(shape: readonly number[], dtype = Dtype.float32): MxArray {
  return made(lib().sm_zeros(out, i32s(shape), shape.length, dtype));
}

export function full(shape: readonly number[], value: number, dtype = Dtype.float32): MxArray {
  return made(lib().sm_full(out, i32s(shape), shape.length, value, dtype));
}

export function arange(start: number, stop: number, step = 1, dtype = Dtype.int32): MxArray {
  return made(lib().sm_arange(out, start, stop, step, dtype));
}

/** Evaluates the graphs behind `arrays` now. */
export function evaluate(...arrays: MxArray[]): void {
  if (arrays.length) check(lib().sm_eval(handles(arrays), arrays.length));
}

/** Starts evaluating `arrays` and returns at once; reading them later waits. */
export function asyncEvaluate(...arrays: MxArray[]): void {
  if (arrays.length) check(lib().sm_async_eval(handles(arrays), arrays.length));
}

type UnaryName =
  | "abs" | "negative" | "exp" | "log" | "log1p" | "sqrt" | "rsqrt" | "square" | "reciprocal"
  | "sin" | "cos" | "tanh" | "sigmoid" | "erf" | "floor" | "ceil" | "logical_not" | "isnan"
  | "stop_gradient" | "copy" | "contiguous";

function unary(name: UnaryName) {
  const fn = lib()[`sm_${name}`];
  return (a: MxArray): MxArray => made(fn(out, a.handle));
}

export const abs = unary("abs");
export const negative = unary("negative");
export const exp = unary("exp");
export const log = unary("log");
export const log1p = unary("log1p");
export const sqrt = unary("sqrt");
export const rsqrt = unary("rsqrt");
export const square = unary("square");
export const reciprocal = unary("reciprocal");
export const sin = unary("sin");
export const cos = unary("cos");
export const tanh = unary("tanh");
export const sigmoid = unary("sigmoid");
export const erf = unary("erf");
export const floor = unary("floor");
export const ceil = unary("ceil");
export const logicalNot = unary("logical_not");
export const isnan = unary("isnan");
export const stopGradient = unary("stop_gradient");
export const copy = unary("copy");
/** A row-contiguous copy when `a` is a strided view (needed before reading its data). */
export const contiguous = unary("contiguous");

type BinaryName =
  | "add" | "subtract" | "multiply" | "divide" | "power" | "remainder" | "maximum" | "minimum"
  | "equal" | "not_equal" | "less" | "less_equal" | "greater" | "greater_equal"
  | "logical_and" | "logical_or" | "matmul";

/** The dtype a bare number takes next to `other`: its dtype, or float32 for a fraction beside integers. */
function scalarDtype(value: number, other: MxArray): Dtype {
  const d = other.dtype;
  if (isFloating(d) || Number.isInteger(value)) return d;
  return Dtype.float32;
}

function binary(name: BinaryName) {
  const fn = lib()[`sm_${name}`];
  return (a: Operand, b: Operand): MxArray => {
    if (typeof a === "number" && typeof b === "number") throw new TypeError(`${name}: at least one operand must be an array`);
    const x = typeof a === "number" ? scalar(a, scalarDtype(a, b as MxArray)) : a;
    const y = typeof b === "number" ? scalar(b, scalarDtype(b, x)) : b;
    try {
      return made(fn(out, x.handle, y.handle));
    } finally {
      if (x !== a) x.free();
      if (y !== b) y.free();
    }
  };
}

export const add = binary("add");
export const subtract = binary("subtract");
export const multiply = binary("multiply");
export const divide = binary("divide");
export const power = binary("power");
export const remainder = binary("remainder");
export const maximum = binary("maximum");
export const minimum = binary("minimum");
export const equal = binary("equal");
export const notEqual = binary("not_equal");
export const less = binary("less");
export const lessEqual = binary("less_equal");
export const greater = binary("greater");
export const greaterEqual = binary("greater_equal");
export const logicalAnd = binary("logical_and");
export const logicalOr = binary("logical_or");
export const matmul = binary("matmul");

export function where(cond: MxArray, x: Operand, y: Operand): MxArray {
  const ref = typeof x === "number" ? (y as MxArray) : x;
  const a = typeof x === "number" ? scalar(x, scalarDtype(x, ref)) : x;
  const b = typeof y === "number" ? scalar(y, scalarDtype(y, a)) : y;
  try {
    return made(lib().sm_where(out, cond.handle, a.handle, b.handle));
  } finally {
    if (a !== x) a.free();
    if (b !== y) b.free();
  }
}

export function astype(a: MxArray, dtype: Dtype): MxArray {
  return made(lib().sm_astype(out, a.handle, dtype));
}

type ReduceName = "sum" | "mean" | "max" | "min" | "prod" | "logsumexp";

function reduce(name: ReduceName) {
  const fn = lib()[`sm_${name}`];
  /** Reduces over `axes` (all axes when omitted). */
  return (a: MxArray, axes?: number | readonly number[], keepdims = false): MxArray => {
    const ax = axes === undefined ? a.shape.map((_, i) => i) : typeof axes === "number" ? [axes] : axes;
    return made(fn(out, a.handle, i32s(ax), ax.length, keepdims ? 1 : 0));
  };
}

export const sum = reduce("sum");
export const mean = reduce("mean");
export const max = reduce("max");
export const min = reduce("min");
export const prod = reduce("prod");
export const logsumexp = reduce("logsumexp");

export function argmax(a: MxArray, axis = -1, keepdims = false): MxArray {
  return made(lib().sm_argmax(out, a.handle, axis, keepdims ? 1 : 0));
}

export function argmin(a: MxArray, axis = -1, keepdims = false): MxArray {
  return made(lib().sm_argmin(out, a.handle, axis, keepdims ? 1 : 0));
}

/** Softmax over `axes`; `precise` computes in float32 for half-precision inputs. */
export function softmax(a: MxArray, axes: number | readonly number[] = -1, precise = false): MxArray {
  const ax = typeof axes === "number" ? [axes] : axes;
  return made(lib().sm_softmax(out, a.handle, i32s(ax), ax.length, precise ? 1 : 0));
}

export function cumsum(a: MxArray, axis = -1, reverse = false, inclusive = true): MxArray {
  return made(lib().sm_cumsum(out, a.handle, axis, reverse ? 1 : 0, inclusive ? 1 : 0));
}

export function sort(a: MxArray, axis = -1): MxArray {
  return made(lib().sm_sort(out, a.handle, axis));
}

export function argsort(a: MxArray, axis = -1): MxArray {
  return made(lib().sm_argsort(out, a.handle, axis));
}

/** Indices that put the `kth` smallest element in place, smaller ones before it. */
export function argpartition(a: MxArray, kth: number, axis = -1): MxArray {
  return made(lib().sm_argpartition(out, a.handle, kth, axis));
}

/** The `k` largest values along `axis`, in no particular order. */
export function topk(a: MxArray, k: number, axis = -1): MxArray {
  return made(lib().sm_topk(out, a.handle, k, axis));
}

export function reshape(a: MxArray, shape: readonly number[]): MxArray {
  return made(lib().sm_reshape(out, a.handle, i32s(shape), shape.length));
}

export function transpose(a: MxArray, axes?: readonly number[]): MxArray {
  const ax = axes ?? a.shape.map((_, i) => a.ndim - 1 - i);
  return made(lib().sm_transpose(out, a.handle, i32s(ax), ax.length));
}

export function squeeze(a: MxArray, axes: number | readonly number[]): MxArray {
  const ax = typeof axes === "number" ? [axes] : axes;
  return made(lib().sm_squeeze(out, a.handle, i32s(ax), ax.length));
}

export function expandDims(a: MxArray, axes: number | readonly number[]): MxArray {
  const ax = typeof axes === "number" ? [axes] : axes;
  return made(lib().sm_expand_dims(out, a.handle, i32s(ax), ax.length));
}

export function broadcastTo(a: MxArray, shape: readonly number[]): MxArray {
  return made(lib().sm_broadcast_to(out, a.handle, i32s(shape), shape.length));
}

/** a[start[0]:stop[0]:strides[0], ...] over all axes. */
export function slice(a: MxArray, start: readonly number[], stop: readonly number[], strides?: readonly number[]): MxArray {
  const n = start.length;
  return made(lib().sm_slice(out, a.handle, i32s(start), i32s(stop), i32s(strides ?? start.map(() => 1)), n));
}

/** A copy of `src` with `update` written into [start, stop). */
export function sliceUpdate(src: MxArray, update: MxArray, start: readonly number[], stop: readonly number[], strides?: readonly number[]): MxArray {
  const n = start.length;
  return made(lib().sm_slice_update(out, src.handle, update.handle, i32s(start), i32s(stop), i32s(strides ?? start.map(() => 1)), n));
}

export function concatenate(arrays: readonly MxArray[], axis = 0): MxArray {
  return made(lib().sm_concatenate(out, handles(arrays), arrays.length, axis));
}

export function stack(arrays: readonly MxArray[], axis = 0): MxArray {
  return made(lib().sm_stack(out, handles(arrays), arrays.length, axis));
}

/** Gathers slices of `a` at `indices` along `axis` (an embedding lookup with axis 0). */
export function take(a: MxArray, indices: MxArray, axis = 0): MxArray {
  return made(lib().sm_take(out, a.handle, indices.handle, axis));
}

export function takeAlongAxis(a: MxArray, indices: MxArray, axis = -1): MxArray {
  return made(lib().sm_take_along_axis(out, a.handle, indices.handle, axis));
}

export function putAlongAxis(a: MxArray, indices: MxArray, values: MxArray, axis = -1): MxArray {
  return made(lib().sm_put_along_axis(out, a.handle, indices.handle, values.handle, axis));
}

export function tril(a: MxArray, k = 0): MxArray {
  return made(lib().sm_tril(out, a.handle, k));
}

export function triu(a: MxArray, k = 0): MxArray {
  return made(lib().sm_triu(out, a.handle, k));
}
