// The few layers every architecture shares: linear and embedding over dense or quantized
// weights. Architectures write their own attention and MLP from these (as mlx-lm does).
import {
  add, cpuManyRowsTake, cpuTilesTake, defaultDevice, dequantize, dequantizeFloat32, gatedActivation, type MxArray, matmul, quantizedGatedMatmul, quantizedMatmul,
  quantizedMatmulRows, type QuantizedWeight, take, transpose, tidy,
} from "../mlx/index.ts";

export type Weight = MxArray | QuantizedWeight;

export function isQuantized(w: Weight): w is QuantizedWeight {
  return (w as QuantizedWeight).scales !== undefined;
}

/**
 * Up to this many rows (tokens in one forward: decode batches, short prompts), quantized weights
 * on the CPU go through the project's kernel, which unpacks each packed weight once per 8 rows;
 * above it (prefill) a float32 copy of the one layer's weights feeds BLAS, unless the kernel has
 * a many-row path for the CPU: then it runs every row count, from 16 rows on AMX tiles
 * (ffi/qmm_amx.cpp) or, with AVX-512 VNNI, on int16 panels (ffi/qmm_panels.cpp). Without either,
 * one matmul alone (bench:qmm) crosses over near 16 rows, but a whole SmolLM2 forward, where the
 * float32 copies also evict the caches, crosses near 50: 17 rows took 49 ms through the kernel
 * and 84 ms through BLAS, 48 rows 102 and 110 ms, 64 rows 134 and 124 ms.
 */
export const CPU_KERNEL_MAX_ROWS = 48;

/** x @ w.T (+ bias): the Linear layer, weights stored (out, in). The one place a matmul kernel is chosen. */
export function linear(x: MxArray, w: Weight, bias: MxArray | null = null): MxArray {
  const y = isQuantized(w) ? quantizedLinear(x, w) : matmul(x, transpose(w));
  return bias ? add(y, bias) : y;
}

function quantizedLinear(x: MxArray, w: QuantizedWeight): MxArray {
  // Metal has fast quantized kernels at every size.
  if (defaultDevice() !== "cpu") return quantizedMatmul(x, w);
  if (rowsOf(x) <= CPU_KERNEL_MAX_ROWS || manyRowsTake(w)) return quantizedMatmulRows(x, w);
  return matmul(x, transpose(dequantizeFloat32(w)));
}

/**
 * act(x @ gate.T) * (x @ up.T): a gated MLP's first half. Quantized on a CPU with AMX tiles it is
 * one op: from 16 rows (prefill) one kernel computes both products and the gate, neither product
 * written out; below, the op runs the same kernels as linear twice and gatedActivation.
 */
export function gatedLinear(x: MxArray, gate: Weight, up: Weight, act: "silu" | "gelu_tanh"): MxArray {
  if (isQuantized(gate) && isQuantized(up) && defaultDevice() === "cpu" && samePacking(gate, up) && tilesTake(gate)) {
    return quantizedGatedMatmul(x, gate, up, act);
  }
  return gatedActivation(linear(x, gate), linear(x, up), act);
}

const rowsOf = (x: MxArray) => x.shape.slice(0, -1).reduce((a, b) => a * b, 1);
const samePacking = (a: QuantizedWeight, b: QuantizedWeight) => a.groupSize === b.groupSize && a.bits === b.bits;

const tiles = new Map<string, boolean>();
const manyRows = new Map<string, boolean>();

// What the kernel answers for a packing does not change while the process runs.
function cached(answers: Map<string, boolean>, ask: (groupSize: number, bits: number) => boolean, w: QuantizedWeight): boolean {
  const key = `${w.groupSize}/${w.bits}`;
  let takes = answers.get(key);
  if (takes === undefined) answers.set(key, (takes = ask(w.groupSize, w.bits)));
  return takes;
}

const tilesTake = (w: QuantizedWeight) => cached(tiles, cpuTilesTake, w);
const manyRowsTake = (w: QuantizedWeight) => cached(manyRows, cpuManyRowsTake, w);

/** Rows of the embedding table for token ids of any shape: (..., D). */
export function embed(ids: MxArray, w: Weight): MxArray {
  if (!isQuantized(w)) return take(w, ids, 0);
  return tidy(() =>
    dequantize({ ...w, w: take(w.w, ids, 0), scales: take(w.scales, ids, 0), biases: take(w.biases, ids, 0) }),
  );
}
