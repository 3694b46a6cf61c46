// The quantized matmul for many rows (prefill) on AMX tiles: see qmm_amx.cpp.
#pragma once

#include "gated.h"
#include "qmm_layout.h"

namespace semantic::cpu {

/** Whether qmm_amx takes this packing: tiles available, 4- or 8-bit weights, K a multiple of 32. */
bool qmm_amx_takes(int bits, int group_size, int K);

/** p.out = p.x @ dequantize(p.w).T, over the thread pool. Call only where qmm_amx_takes. */
void qmm_amx(const Problem& p, int bits, int group_size);

/**
 * gate.out = act(x @ dequantize(gate.w).T) * (x @ dequantize(up.w).T), for gate and up of one
 * shape and packing (gate.x, M, N, K; up's weights): one pass, whose panels hold the same 16 rows
 * of both, so neither product is ever written out. Call only where qmm_amx_takes.
 */
void qmm_amx_gated(const Problem& gate, const Problem& up, GateActivation act, int bits, int group_size);

}  // namespace semantic::cpu
