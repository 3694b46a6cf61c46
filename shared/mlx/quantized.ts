// Affine-quantized weights (MLX's format: packed uint32 + per-group scales and biases).
import type { Pointer } from "bun:ffi";
import { MxArray } from "./array.ts";
import type { Dtype } from "./dtype.ts";
import { check, lib, out, readI32 } from "./native.ts";
import { made } from "./ops.ts";

export type QuantizedWeight = { w: MxArray; scales: MxArray; biases: MxArray; groupSize: number; bits: number };

/** x @ dequantize(w).T (transpose=true, the Linear layout) without materializing the weights. */
export function quantizedMatmul(x: MxArray, q: QuantizedWeight, transpose = true): MxArray {
  return made(lib().sm_quantized_matmul(out, x.handle, q.w.handle, q.scales.handle, q.biases.handle, transpose ? 1 : 0, q.groupSize, q.bits));
}

/**
 * The same product through the project's CPU kernel for few rows (decode): each weight is read
 * once for all rows, columns split over threads. Off the CPU, and for dtypes or bit widths the
 * kernel does not take, it is MLX's quantizedMatmul.
 */
export function quantizedMatmulRows(x: MxArray, q: QuantizedWeight): MxArray {
  return made(lib().sm_quantized_matmul_rows(out, x.handle, q.w.handle, q.scales.handle, q.biases.handle, q.groupSize, q.bits));
}

/**
 * act(x @ dequantize(gate).T) * (x @ dequantize(up).T) for gate and up of one shape and packing:
 * on the CPU one kernel computes both products and the gate (on AMX tiles from 16 rows, without
 * writing either product out); elsewhere quantizedMatmulRows twice and gatedActivation.
 */
export function quantizedGatedMatmul(x: MxArray, gate: QuantizedWeight, up: QuantizedWeight, act: "silu" | "gelu_tanh"): MxArray {
  if (gate.groupSize !== up.groupSize || gate.bits !== up.bits) throw new RangeError("gate and up are packed differently");
  return made(lib().sm_quantized_gated_matmul(
    out, x.handle, gate.w.handle, gate.scales.handle, gate.biases.handle, up.w.handle, up.scales.handle, up.biases.handle, gate.groupSize, gate.bits, act === "silu" ? 0 : 1,
  ));
}

/** dequantize(q) as float32 through the same CPU kernel (MLX's own CPU dequantize is far slower); MLX's off the CPU. */
export function dequantizeFloat32(q: QuantizedWeight): MxArray {
  return made(lib().sm_dequantize_f32(out, q.w.handle, q.scales.handle, q.biases.handle, q.groupSize, q.bits));
}

/** Threads quantizedMatmulRows splits its columns over (OMP_NUM_THREADS, else the cores, at most 8). */
export function quantizedMatmulThreads(): number {
  check(lib().sm_quantized_matmul_threads(out));
  return readI32();
}

/** Whether quantizedMatmulRows and dequantizeFloat32 have a CPU kernel for this packing (else they are MLX's ops). */
export function cpuKernelTakes(groupSize: number, bits: number): boolean {
  check(lib().sm_quantized_cpu_takes(out, groupSize, bits));
  return readI32() === 1;
}

/**
 * Whether quantizedMatmulRows runs on AMX tiles from 16 rows for this packing (Xeon Sapphire
 * Rapids and later): operands of 16 significant bits, not 24.
 */
export function cpuTilesTake(groupSize: number, bits: number): boolean {
  check(lib().sm_quantized_cpu_tiles(out, groupSize, bits));
  return readI32() === 1;
}

/**
 * Whether quantizedMatmulRows beats a float32 copy through BLAS at every number of rows for this
 * packing: on AMX tiles, or with AVX-512 VNNI on int16 panels (ffi/qmm_panels.cpp; x as 16-bit
 * integers per group of 32, about the tiles' precision).
 */
export function cpuManyRowsTake(groupSize: number, bits: number): boolean {
  check(lib().sm_quantized_cpu_many_rows(out, groupSize, bits));
  return readI32() === 1;
}

export function quantize(w: MxArray, groupSize = 64, bits = 4): QuantizedWeight {
  const slots = new BigUint64Array(3);
  check(lib().sm_quantize(slots, w.handle, groupSize, bits));
  const [pw, scales, biases] = Array.from(slots, (h) => new MxArray(Number(h) as Pointer));
  return { w: pw, scales, biases, groupSize, bits };
}

/** The full-precision weights; `dtype` defaults to the scales' dtype. */
export function dequantize(q: QuantizedWeight, dtype?: Dtype): MxArray {
  return made(lib().sm_dequantize(out, q.w.handle, q.scales.handle, q.biases.handle, q.groupSize, q.bits, dtype ?? -1));
}
