// Attention for many query rows on AMX tiles: see attention_amx.cpp.
#pragma once

#include "attention_rows.h"

namespace semantic::cpu {

/** Whether attention_tiles runs: tiles available, D 64, 128 or 256, at least 16 query rows per key/value head. */
bool attention_tiles_take(int rows_per_head, int D);

/** Every work item of `p` on tiles, over the thread pool (it sets p's rows per item). */
void attention_tiles(AttentionProblem& p, int D);

}  // namespace semantic::cpu
