// Intel AMX (the tile matrix unit of Xeon Sapphire Rapids and later) for the CPU kernels: one
// TDPBF16PS multiplies a 16x32 by a 32x16 bf16 tile into 16x16 float32 sums, about ten times
// the float32 FMA rate of AVX-512 on the same core (measured here: 3.8 TFLOP/s a core).
#pragma once

// The kernels that use tiles compile only where the compiler targets them (-march=native on
// such a CPU); everywhere else these are stubs and the float32 paths run.
#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define SEMANTIC_AMX 1
#endif

namespace semantic::cpu {

/**
 * Whether tiles may be used: the CPU has AMX-BF16 and Linux granted this process the tile data
 * state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once; without it the first tile op is SIGILL).
 * SEMANTIC_AMX=0 in the environment turns the tile paths off.
 */
bool amx_available();

/** Configures every tile as 16 rows of 64 bytes on the calling thread (before its first tile op). */
void amx_configure_thread();

}  // namespace semantic::cpu
