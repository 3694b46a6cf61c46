// The loaded C ABI, its status check and the scratch out-parameters every call writes to.
// Only shared/mlx/* imports this; everything above sees Array and plain functions.
import { CString, dlopen, FFIType, ptr, type Pointer } from "bun:ffi";
import { openMlx, type MlxSymbols } from "../../ffi/symbols.ts";
import { ffiLibraryPath } from "../paths.ts";

/** An error raised inside MLX (or our C ABI), carrying MLX's own message. */
export class MlxError extends Error {
  override name = "MlxError";
}

let symbols: MlxSymbols | null = null;

/** The C ABI's symbols, opened on first use. */
export function lib(): MlxSymbols {
  if (symbols) return symbols;
  quietOpenBlas();
  try {
    symbols = openMlx(ffiLibraryPath).symbols;
  } catch (e) {
    throw new MlxError(`cannot load ${ffiLibraryPath} (run \`bun run setup\`): ${(e as Error).message}`);
  }
  return symbols;
}

// OpenBLAS (the Linux CPU BLAS) reads OPENBLAS_THREAD_TIMEOUT when it loads with MLX. By default
// its idle workers spin for ~2^28 cycles after every call, taking the cores the project's own
// kernels (attention, quantized matmul) run on next; 2^4 lets them sleep at once (a 120-token turn
// over 3.5K cached tokens: 920 -> 690 ms). Bun's process.env does not reach C's environment, so it
// is set through libc; a value the user set is kept.
function quietOpenBlas(): void {
  if (process.platform !== "linux" || process.env.OPENBLAS_THREAD_TIMEOUT) return;
  const libc = dlopen("libc.so.6", { setenv: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 } });
  try {
    libc.symbols.setenv(ptr(cstr("OPENBLAS_THREAD_TIMEOUT")), ptr(cstr("4")), 0);
  } finally {
    libc.close();
  }
}

/** Throws MlxError with MLX's message when a call returned a non-zero status. */
export function check(status: number): void {
  if (status !== 0) throw new MlxError(new CString(lib().sm_last_error() as number).toString());
}

// Single-threaded JS: one set of scratch slots serves every call, read right after it returns.
// Native code writes through `out`, a raw address, so `slots` must live as long as the module:
// the readers read the array itself, which keeps it alive (a top-level binding no function used
// was collected once the module had run, and the writes then corrupted Bun's heap).
const slots = new BigUint64Array(8);
export const out = ptr(slots);
// Arithmetic drops bun's Pointer brand; these are still addresses inside `slots`.
export const out1 = (out + 8) as Pointer;
export const out2 = (out + 16) as Pointer;

const slot = (at: Pointer) => slots[(at - out) / 8];
export const readPtr = (at = out) => Number(slot(at)) as Pointer;
export const readU64 = (at = out) => Number(slot(at));
// An int32 is written to the slot's first four bytes: its low half on little-endian machines.
export const readI32 = (at = out) => Number(BigInt.asIntN(32, slot(at)));
export const readF64 = (at = out) => new Float64Array(BigUint64Array.of(slot(at)).buffer)[0];

/** A NUL-terminated UTF-8 copy of `s` for `const char*` arguments. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}
