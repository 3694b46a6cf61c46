// The few layers every architecture shares: linear and embedding over dense or quantized
// weights. Architectures write their own attention and MLP from these (as mlx-lm does).
import { add, dequantize, type MxArray, matmul, quantizedMatmul, type QuantizedWeight, take, transpose, tidy } from "../mlx/index.ts";

export type Weight = MxArray | QuantizedWeight;

export function isQuantized(w: Weight): w is QuantizedWeight {
  return (w as QuantizedWeight).scales !== undefined;
}

/** x @ w.T (+ bias): the Linear layer, weights stored (out, in). */
export function linear(x: MxArray, w: Weight, bias: MxArray | null = null): MxArray {
  const y = isQuantized(w) ? quantizedMatmul(x, w) : matmul(x, transpose(w));
  return bias ? add(y, bias) : y;
}

/** Rows of the embedding table for token ids of any shape: (..., D). */
export function embed(ids: MxArray, w: Weight): MxArray {
  if (!isQuantized(w)) return take(w, ids, 0);
  return tidy(() =>
    dequantize({ ...w, w: take(w.w, ids, 0), scales: take(w.scales, ids, 0), biases: take(w.biases, ids, 0) }),
  );
}
