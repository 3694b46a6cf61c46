// The thread pool the project's CPU kernels share (one per process: two pools would fight over
// the same cores).
#pragma once

namespace semantic::cpu {

/** Threads the pool runs work on (the caller included). */
int threads();

/**
 * Runs fn(ctx, begin, end) over [0, total) in chunks of `chunk` on the pool and the calling
 * thread; returns when all are done. Runs it all on the caller when another job holds the pool.
 */
void parallel_for(void (*fn)(void*, int, int), void* ctx, int total, int chunk);

}  // namespace semantic::cpu
