// Files through MLX's own loaders: safetensors (with string metadata) and GGUF (with typed
// metadata). Callers validate untrusted files before they get here (see shared/models/gguf.ts).
import { CString, ptr as ptrOf, type Pointer } from "bun:ffi";
import { MxArray } from "./array.ts";
import { check, cstr, lib, out, out1, out2, readI32, readPtr, readU64 } from "./native.ts";
import { handles } from "./ops.ts";

export type GgufMetaValue = string | string[] | number | number[];

export type LoadedArrays<M> = { arrays: Map<string, MxArray>; metadata: Map<string, M> };

function readMap<M>(mapHandle: Pointer, meta: (i: number, kind: number, count: number) => M): LoadedArrays<M> {
  const l = lib();
  try {
    check(l.sm_map_count(out, out1, mapHandle));
    const nArrays = readI32(out);
    const nMeta = readI32(out1);
    const arrays = new Map<string, MxArray>();
    for (let i = 0; i < nArrays; i++) {
      check(l.sm_map_array(out, out1, mapHandle, i));
      const key = new CString(readPtr(out)).toString();
      arrays.set(key, new MxArray(readPtr(out1)));
    }
    const metadata = new Map<string, M>();
    for (let i = 0; i < nMeta; i++) {
      check(l.sm_map_meta(out, out1, out2, mapHandle, i));
      const key = new CString(readPtr(out)).toString();
      metadata.set(key, meta(i, readI32(out1), readI32(out2)));
    }
    return { arrays, metadata };
  } finally {
    l.sm_map_free(mapHandle);
  }
}

function metaString(mapHandle: Pointer, i: number, j: number): string {
  check(lib().sm_map_meta_string(out, out1, mapHandle, i, j));
  const len = readU64(out1);
  return len ? new CString(readPtr(out), 0, len).toString() : "";
}

export function loadSafetensors(path: string): LoadedArrays<string> {
  check(lib().sm_load_safetensors(out, cstr(path)));
  const m = readPtr();
  return readMap(m, (i) => metaString(m, i, 0));
}

/** Tensors (Q4_0/Q4_1/Q8_0 as MLX quantized triples `name`, `name.scales`, `name.biases`) and metadata. */
export function loadGguf(path: string): LoadedArrays<GgufMetaValue> {
  check(lib().sm_load_gguf(out, cstr(path)));
  const m = readPtr();
  return readMap<GgufMetaValue>(m, (i, kind, count) => {
    if (kind === 2) return metaString(m, i, 0);
    if (kind === 3) return Array.from({ length: count }, (_, j) => metaString(m, i, j));
    if (kind !== 1) return [];
    check(lib().sm_map_meta_array(out, m, i));
    const a = new MxArray(readPtr());
    try {
      const values = Array.from(a.data(), Number);
      return a.ndim === 0 ? values[0] : values;
    } finally {
      a.free();
    }
  });
}

export function saveSafetensors(path: string, arrays: Map<string, MxArray> | Record<string, MxArray>, metadata: Record<string, string> = {}): void {
  const entries = arrays instanceof Map ? [...arrays] : Object.entries(arrays);
  const names = entries.map(([k]) => cstr(k));
  const keys = Object.keys(metadata).map(cstr);
  const values = Object.values(metadata).map(cstr);
  // Empty lists still need a valid pointer; `n` tells the C side how many entries to read.
  const ptrs = (bufs: Buffer[]) => BigUint64Array.from(bufs.length ? bufs.map((b) => BigInt(ptrOf(b))) : [0n]);
  check(lib().sm_save_safetensors(cstr(path), ptrs(names), handles(entries.map(([, a]) => a)), entries.length, ptrs(keys), ptrs(values), keys.length));
}

/** The linked MLX's version string. */
export function mlxVersion(): string {
  check(lib().sm_version(out));
  return new CString(readPtr()).toString();
}
