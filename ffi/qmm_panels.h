// The quantized matmul for many rows (prefill) on AVX-512 VNNI's 16-bit integer products, for
// CPUs without AMX tiles: see qmm_panels.cpp.
#pragma once

#include "qmm_layout.h"

namespace semantic::cpu {

/** Whether qmm_panels takes this packing: built for AVX-512 with VNNI, 2-, 4- or 8-bit weights in groups of 32, 64 or 128. */
bool qmm_panels_takes(int bits, int group_size);

/** p.out = p.x @ dequantize(p.w).T, over the thread pool. Call only where qmm_panels_takes. */
void qmm_panels(const Problem& p, int bits, int group_size);

}  // namespace semantic::cpu
