// The loaded C ABI, its status check and the scratch out-parameters every call writes to.
// Only shared/mlx/* imports this; everything above sees Array and plain functions.
import { CString, ptr, read } from "bun:ffi";
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
  try {
    symbols = openMlx(ffiLibraryPath).symbols;
  } catch (e) {
    throw new MlxError(`cannot load ${ffiLibraryPath} (run \`bun run setup\`): ${(e as Error).message}`);
  }
  return symbols;
}

/** Throws MlxError with MLX's message when a call returned a non-zero status. */
export function check(status: number): void {
  if (status !== 0) throw new MlxError(new CString(lib().sm_last_error() as number).toString());
}

// Single-threaded JS: one set of scratch slots serves every call, read right after it returns.
const slots = new BigUint64Array(8);
export const out = ptr(slots);
export const out1 = out + 8;
export const out2 = out + 16;

export const readPtr = (at = out) => read.ptr(at, 0) as number;
export const readI32 = (at = out) => read.i32(at, 0);
export const readU64 = (at = out) => Number(read.u64(at, 0));
export const readF64 = (at = out) => read.f64(at, 0);

/** A NUL-terminated UTF-8 copy of `s` for `const char*` arguments. */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}
