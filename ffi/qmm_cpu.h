// A CPU kernel for MLX's affine-quantized matmul with few rows (decode), as an MLX primitive.
// MLX's own CPU quantized_matmul is single-threaded and re-reads the weights for every row;
// this one dequantizes each group once for all rows and splits the output columns over threads.
#pragma once

#include "glu_cpu.h"
#include "mlx/mlx.h"

namespace semantic {

/**
 * x @ dequantize(w, scales, biases).T, lazily, in the graph. `w` is (N, K * bits / 32) uint32,
 * scales and biases (N, K / group_size). Runs the custom CPU kernel when the default stream is
 * the CPU's and the inputs are float32 with bits 2, 4 or 8 and group size 32, 64 or 128;
 * everything else (the GPU above all) goes to mx::quantized_matmul.
 */
mlx::core::array quantized_matmul_rows(
    const mlx::core::array& x,
    const mlx::core::array& w,
    const mlx::core::array& scales,
    const mlx::core::array& biases,
    int group_size,
    int bits);

/**
 * act(x @ dequantize(gate).T) * (x @ dequantize(up).T), a gated MLP's first half, for gate and up
 * of one shape and packing: on a CPU with AMX tiles from 16 rows one kernel computes both products
 * and the gate without writing either product out (qmm_amx.cpp); elsewhere the same three ops
 * (quantized_matmul_rows twice, gated_activation).
 */
mlx::core::array quantized_gated_matmul(
    const mlx::core::array& x,
    const mlx::core::array& gate_w,
    const mlx::core::array& gate_scales,
    const mlx::core::array& gate_biases,
    const mlx::core::array& up_w,
    const mlx::core::array& up_scales,
    const mlx::core::array& up_biases,
    int group_size,
    int bits,
    GateActivation act);

/**
 * dequantize(w, scales, biases) as float32 (N, K): the same CPU unpacking, many times faster than
 * MLX's CPU dequantize, for prefill's large matmuls (dequantize, then BLAS). Off the CPU, or
 * for inputs the kernel does not take, it is mx::dequantize.
 */
mlx::core::array dequantize_f32(
    const mlx::core::array& w,
    const mlx::core::array& scales,
    const mlx::core::array& biases,
    int group_size,
    int bits);

/** Whether the CPU kernels take weights of this packing (with float32 scales and biases). */
bool cpu_kernel_takes(int group_size, int bits);

/**
 * Whether quantized_matmul_rows takes this packing at every number of rows: from 16 rows it runs
 * on AMX tiles (qmm_amx.cpp) where the CPU has them, faster than a float32 copy through BLAS.
 */
bool cpu_tiles_take(int group_size, int bits);

/**
 * Whether quantized_matmul_rows beats a float32 copy through BLAS at every number of rows for
 * this packing: on AMX tiles (cpu_tiles_take) or, with AVX-512 VNNI, on int16 panels (qmm_panels.cpp).
 */
bool cpu_many_rows_take(int group_size, int bits);

/** Threads the kernel uses (the caller included). */
int qmm_threads();

}  // namespace semantic
