// AMX availability and tile configuration (see amx.h).

#include "amx.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(SEMANTIC_AMX)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace semantic::cpu {

#if defined(SEMANTIC_AMX)
namespace {

// From Linux's arch/x86/include/uapi/asm/prctl.h and the XSAVE feature numbers.
constexpr int ARCH_REQ_XCOMP_PERM = 0x1023;
constexpr int XFEATURE_XTILEDATA = 18;

bool detect() {
  if (const char* v = std::getenv("SEMANTIC_AMX"); v && std::strcmp(v, "0") == 0) return false;
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool bf16 = d & (1u << 22), tile = d & (1u << 24);
  return bf16 && tile && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

// The LDTILECFG operand: palette 1, then bytes per row and rows for each of the 16 tiles.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

}  // namespace

bool amx_available() {
  static const bool available = detect();
  return available;
}

void amx_configure_thread() {
  TileConfig config;
  for (int t = 0; t < 8; t++) config.colsb[t] = 64, config.rows[t] = 16;
  // GCC 12 does not count LDTILECFG as reading its operand and drops the stores above without this.
  asm volatile("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}
#else
bool amx_available() {
  return false;
}

void amx_configure_thread() {}
#endif

}  // namespace semantic::cpu
