// The quantized matmul for many rows (prefill) on AMX tiles: see qmm_amx.cpp.
#pragma once

#include "qmm_layout.h"

namespace semantic::cpu {

/** Whether qmm_amx takes this packing: tiles available, 4- or 8-bit weights, K a multiple of 32. */
bool qmm_amx_takes(int bits, int group_size, int K);

/** p.out = p.x @ dequantize(p.w).T, over the thread pool. Call only where qmm_amx_takes. */
void qmm_amx(const Problem& p, int bits, int group_size);

}  // namespace semantic::cpu
