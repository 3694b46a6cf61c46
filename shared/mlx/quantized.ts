// Affine-quantized weights (MLX's format: packed uint32 + per-group scales and biases).
import { MxArray } from "./array.ts";
import type { Dtype } from "./dtype.ts";
import { check, lib, out } from "./native.ts";
import { made } from "./ops.ts";

export type QuantizedWeight = { w: MxArray; scales: MxArray; biases: MxArray; groupSize: number; bits: number };

/** x @ dequantize(w).T (transpose=true, the Linear layout) without materializing the weights. */
export function quantizedMatmul(x: MxArray, q: QuantizedWeight, transpose = true): MxArray {
  return made(lib().sm_quantized_matmul(out, x.handle, q.w.handle, q.scales.handle, q.biases.handle, transpose ? 1 : 0, q.groupSize, q.bits));
}

export function quantize(w: MxArray, groupSize = 64, bits = 4): QuantizedWeight {
  const slots = new BigUint64Array(3);
  check(lib().sm_quantize(slots, w.handle, groupSize, bits));
  const [pw, scales, biases] = Array.from(slots, (h) => new MxArray(Number(h)));
  return { w: pw, scales, biases, groupSize, bits };
}

/** The full-precision weights; `dtype` defaults to the scales' dtype. */
export function dequantize(q: QuantizedWeight, dtype?: Dtype): MxArray {
  return made(lib().sm_dequantize(out, q.w.handle, q.scales.handle, q.biases.handle, q.groupSize, q.bits, dtype ?? -1));
}
