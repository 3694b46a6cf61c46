// The CPU kernel behind semantic::quantized_matmul_rows (see qmm_cpu.h).
//
// The weights' layout and their unpacking are in qmm_layout.h. The loops use the vector helpers
// of cpu_simd.h; NEON's speed is not measured here (no arm64 machine). For each output column
// the kernel dequantizes W weights at a time and multiplies them into every row's accumulator,
// so each weight byte is read once per call whatever the number of rows. From 16 rows, on a CPU
// with AMX tiles, qmm_amx.cpp runs instead.

#include "qmm_cpu.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "mlx/primitives.h"
#include "cpu_parallel.h"
#include "cpu_primitive.h"
#include "cpu_simd.h"
#include "qmm_amx.h"
#include "qmm_layout.h"
#include "qmm_panels.h"

namespace mx = mlx::core;

namespace semantic {
namespace {

using namespace cpu;

// Columns n .. n + NC - 1 for MB rows starting at x / out: dequantize W weights of each column,
// use them MB times; the NC columns share each row's loads of x.
template <int BITS, int G, int MB, int NC>
inline void column_block(const Problem& p, const float* x, float* out, int n) {
  const int K = p.K, groups = K / G, words = K * BITS / 32;
  const uint32_t* row[NC];
  const float* s[NC];
  const float* b[NC];
  for (int c = 0; c < NC; c++) {
    row[c] = p.w + static_cast<size_t>(n + c) * words;
    s[c] = p.scales + static_cast<size_t>(n + c) * groups;
    b[c] = p.biases + static_cast<size_t>(n + c) * groups;
  }
  vf acc[NC][MB];
  for (int c = 0; c < NC; c++)
    for (int m = 0; m < MB; m++) acc[c][m] = vf{};
  for (int g = 0; g < groups; g++) {
    vf scale[NC], bias[NC];
    for (int c = 0; c < NC; c++) scale[c] = splat(s[c][g]), bias[c] = splat(b[c][g]);
    for (int k = g * G; k < (g + 1) * G; k += W) {
      vf wf[NC];
      for (int c = 0; c < NC; c++) wf[c] = unpack<BITS>(row[c], k) * scale[c] + bias[c];
      for (int m = 0; m < MB; m++) {
        const vf xv = loadv(x + static_cast<size_t>(m) * K + k);
        for (int c = 0; c < NC; c++) acc[c][m] += wf[c] * xv;
      }
    }
  }
  for (int c = 0; c < NC; c++)
    for (int m = 0; m < MB; m++) out[static_cast<size_t>(m) * p.N + n + c] = hsum(acc[c][m]);
}

// Rows taken together. Their accumulators fit in registers (AVX-512 has 32, AVX2 16; a NEON
// vector of 8 floats takes two of its 32), and eight rows of x stay in L1 (measured: blocks of
// 16 rows are slower with AVX-512 too).
constexpr int ROW_BLOCK = 8;

// Columns [n0, n1) for MB rows: two columns at a time while their accumulators fit in registers
// too. Each column sums in the same order either way.
template <int BITS, int G, int MB>
void columns_fused(const Problem& p, const float* x, float* out, int n0, int n1) {
  constexpr int NC = MB <= (W == 16 ? 8 : 4) ? 2 : 1;
  int n = n0;
  for (; n + NC <= n1; n += NC) column_block<BITS, G, MB, NC>(p, x, out, n);
  for (; n < n1; n++) column_block<BITS, G, MB, 1>(p, x, out, n);
}

// columns_fused for a number of rows known at run time (1 .. ROW_BLOCK).
template <int BITS, int G, int MB = 1>
void columns_rows(int rows, const Problem& p, const float* x, float* out, int n0, int n1) {
  if constexpr (MB < ROW_BLOCK) {
    if (rows > MB) return columns_rows<BITS, G, MB + 1>(rows, p, x, out, n0, n1);
  }
  columns_fused<BITS, G, MB>(p, x, out, n0, n1);
}

// Columns [n0, n1) for all rows, ROW_BLOCK rows at a time: more rows unpack the weights again
// (from cache) rather than spill accumulators. A row's result does not depend on the others.
template <int BITS, int G>
void columns(const Problem& p, int n0, int n1) {
  for (int m0 = 0; m0 < p.M; m0 += ROW_BLOCK) {
    const size_t at = static_cast<size_t>(m0);
    columns_rows<BITS, G>(std::min(ROW_BLOCK, p.M - m0), p, p.x + at * p.K, p.out + at * p.N, n0, n1);
  }
}

// Row n of the weights, dequantized into dst[0 .. K).
template <int BITS, int G>
void dequantize_row(const Problem& p, int n, float* dst) {
  const int K = p.K, groups = K / G, words = K * BITS / 32;
  const uint32_t* row = p.w + static_cast<size_t>(n) * words;
  const float* s = p.scales + static_cast<size_t>(n) * groups;
  const float* b = p.biases + static_cast<size_t>(n) * groups;
  for (int g = 0; g < groups; g++) {
    const vf scale = splat(s[g]), bias = splat(b[g]);
    for (int k = g * G; k < (g + 1) * G; k += W) storev(dst + k, unpack<BITS>(row, k) * scale + bias);
  }
}

// The dequantize op: weight rows [n0, n1) into out (N, K).
template <int BITS, int G>
void rows_dequantized(const Problem& p, int n0, int n1) {
  for (int n = n0; n < n1; n++) dequantize_row<BITS, G>(p, n, p.out + static_cast<size_t>(n) * p.K);
}

using ColumnsFn = void (*)(const Problem&, int, int);

enum class Op { matmul, dequantize };

template <int BITS, int G>
ColumnsFn pick_op(Op op) {
  return op == Op::matmul ? columns<BITS, G> : rows_dequantized<BITS, G>;
}

template <int BITS>
ColumnsFn pick_group(int group_size, Op op) {
  switch (group_size) {
    case 32: return pick_op<BITS, 32>(op);
    case 64: return pick_op<BITS, 64>(op);
    case 128: return pick_op<BITS, 128>(op);
    default: return nullptr;
  }
}

ColumnsFn pick(int bits, int group_size, Op op) {
  switch (bits) {
    case 2: return pick_group<2>(group_size, op);
    case 4: return pick_group<4>(group_size, op);
    case 8: return pick_group<8>(group_size, op);
    default: return nullptr;
  }
}

struct Job {
  ColumnsFn fn;
  Problem p;
};

void run_job(void* ctx, int n0, int n1) {
  auto* j = static_cast<Job*>(ctx);
  j->fn(j->p, n0, n1);
}

// Below this many weight-row products a call runs on the calling thread alone: waking the pool
// costs more than it saves (k and v projections of small models in decode).
constexpr double SERIAL_WORK = 1 << 17;

// From this many rows a matmul runs on AMX tiles where the CPU has them (qmm_amx.cpp), else
// on AVX-512 VNNI panels (qmm_panels.cpp).
constexpr int AMX_MIN_ROWS = 16;
constexpr int PANEL_MIN_ROWS = 16;

// Runs `op` over all N weight rows, split over the pool when there is enough work.
void run(const Problem& p, int group_size, int bits, Op op) {
  ColumnsFn fn = pick(bits, group_size, op);
  if (!fn) throw std::invalid_argument("[semantic qmm] unsupported bits or group size");
  if (p.N == 0 || (op == Op::matmul && p.M == 0)) return;
  if (op == Op::matmul && p.M >= AMX_MIN_ROWS && qmm_amx_takes(bits, group_size, p.K)) return qmm_amx(p, bits, group_size);
  if (op == Op::matmul && p.M >= PANEL_MIN_ROWS && qmm_panels_takes(bits, group_size)) return qmm_panels(p, bits, group_size);
  const double work = static_cast<double>(p.N) * p.K * (op == Op::matmul ? std::max(1.0, p.M / 4.0) : 1.0);
  const int threads = work < SERIAL_WORK ? 1 : cpu::threads();
  if (threads == 1) return fn(p, 0, p.N);
  // Four chunks per thread, so a thread slowed by another process does not hold up the rest.
  int chunk = (p.N + threads * 4 - 1) / (threads * 4);
  chunk = std::max(4, (chunk + 3) / 4 * 4);
  Job job{fn, p};
  parallel_for(run_job, &job, p.N, chunk);
}

// x @ w.T's shape: x's, with its last axis w's rows.
mx::Shape product_shape(const mx::array& x, const mx::array& w) {
  auto shape = x.shape();
  shape.back() = w.shape(0);
  return shape;
}

// Inputs (x, w, scales, biases) for the matmul, (w, scales, biases) for the dequantize.
class QuantizedCpu : public mx::UnaryPrimitive {
 public:
  QuantizedCpu(mx::Stream stream, Op op, int group_size, int bits)
      : mx::UnaryPrimitive(stream), op_(op), group_size_(group_size), bits_(bits) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [op = op_, group_size = group_size_, bits = bits_](std::vector<mx::array>& in, mx::array& out) {
      const bool mm = op == Op::matmul;
      const mx::array& w = in[mm ? 1 : 0];
      const int K = static_cast<int>(static_cast<int64_t>(w.shape(1)) * 32 / bits);
      std::vector<float> xs, ss, bs;
      std::vector<uint32_t> ws;
      Problem p{mm ? row_contiguous(in[0], xs) : nullptr, row_contiguous(w, ws), row_contiguous(in[mm ? 2 : 1], ss),
                row_contiguous(in[mm ? 3 : 2], bs), out.data<float>(), mm ? static_cast<int>(in[0].size() / K) : 0, w.shape(0), K};
      run(p, group_size, bits, op);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic qmm] has no GPU kernel (use MLX's quantized ops)");
  }

  const char* name() const override { return op_ == Op::matmul ? "SemanticQuantizedMatmulRows" : "SemanticDequantize"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const QuantizedCpu&>(other);
    return op_ == o.op_ && group_size_ == o.group_size_ && bits_ == o.bits_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    if (op_ == Op::dequantize) return {{inputs[0].shape(0), inputs[0].shape(1) * 32 / bits_}};
    return {product_shape(inputs[0], inputs[1])};
  }

 private:
  Op op_;
  int group_size_;
  int bits_;
};

// Inputs (x, gate w, scales, biases, up w, scales, biases): act(x @ gate.T) * (x @ up.T).
class QuantizedGatedCpu : public mx::UnaryPrimitive {
 public:
  QuantizedGatedCpu(mx::Stream stream, GateActivation act, int group_size, int bits)
      : mx::UnaryPrimitive(stream), act_(act), group_size_(group_size), bits_(bits) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [act = act_, group_size = group_size_, bits = bits_](std::vector<mx::array>& in, mx::array& out) {
      const int K = static_cast<int>(static_cast<int64_t>(in[1].shape(1)) * 32 / bits);
      std::vector<float> xs, gs, gb, us, ub;
      std::vector<uint32_t> gw, uw;
      const float* x = row_contiguous(in[0], xs);
      const int M = static_cast<int>(in[0].size() / K), N = in[1].shape(0);
      Problem gate{x, row_contiguous(in[1], gw), row_contiguous(in[2], gs), row_contiguous(in[3], gb), out.data<float>(), M, N, K};
      Problem up{x, row_contiguous(in[4], uw), row_contiguous(in[5], us), row_contiguous(in[6], ub), nullptr, M, N, K};
      if (M >= AMX_MIN_ROWS && qmm_amx_takes(bits, group_size, K)) return qmm_amx_gated(gate, up, act, bits, group_size);
      // Few rows, or no tiles: both products, then the gate (what the three ops apart compute).
      std::vector<float> u(static_cast<size_t>(M) * N);
      up.out = u.data();
      run(gate, group_size, bits, Op::matmul);
      run(up, group_size, bits, Op::matmul);
      gate_values(gate.out, u.data(), gate.out, static_cast<int64_t>(M) * N, act);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic gated qmm] has no GPU kernel (use MLX's quantized ops)");
  }

  const char* name() const override { return "SemanticQuantizedGatedMatmul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const QuantizedGatedCpu&>(other);
    return act_ == o.act_ && group_size_ == o.group_size_ && bits_ == o.bits_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override { return {product_shape(inputs[0], inputs[1])}; }

 private:
  GateActivation act_;
  int group_size_;
  int bits_;
};

// Whether the CPU kernels take these weights (float32 scales and biases, a supported packing),
// on the default stream `s`.
bool takes(const mx::Stream& s, const mx::array& w, const mx::array& scales, const mx::array& biases, int group_size, int bits) {
  if (s.device.type != mx::Device::cpu || !pick(bits, group_size, Op::matmul)) return false;
  if (w.dtype() != mx::uint32 || w.ndim() != 2 || scales.dtype() != mx::float32 || biases.dtype() != mx::float32) return false;
  if (scales.ndim() != 2 || biases.shape() != scales.shape() || scales.shape(0) != w.shape(0)) return false;
  return static_cast<int64_t>(w.shape(1)) * 32 == static_cast<int64_t>(scales.shape(1)) * group_size * bits;
}

}  // namespace

mx::array quantized_matmul_rows(
    const mx::array& x,
    const mx::array& w,
    const mx::array& scales,
    const mx::array& biases,
    int group_size,
    int bits) {
  auto s = mx::default_stream(mx::default_device());
  const bool ours = takes(s, w, scales, biases, group_size, bits) && x.dtype() == mx::float32 && x.ndim() >= 1 &&
      static_cast<int64_t>(x.shape(-1)) * bits == static_cast<int64_t>(w.shape(1)) * 32;
  // Anything else keeps MLX's op, which also gives MLX's own error for inconsistent shapes.
  if (!ours) return mx::quantized_matmul(x, w, scales, biases, true, group_size, bits);
  return mx::array(product_shape(x, w), mx::float32, std::make_shared<QuantizedCpu>(s, Op::matmul, group_size, bits), {x, w, scales, biases});
}

mx::array quantized_gated_matmul(
    const mx::array& x,
    const mx::array& gate_w, const mx::array& gate_scales, const mx::array& gate_biases,
    const mx::array& up_w, const mx::array& up_scales, const mx::array& up_biases,
    int group_size, int bits, GateActivation act) {
  auto s = mx::default_stream(mx::default_device());
  const bool ours = takes(s, gate_w, gate_scales, gate_biases, group_size, bits) && takes(s, up_w, up_scales, up_biases, group_size, bits) &&
      up_w.shape() == gate_w.shape() && x.dtype() == mx::float32 && x.ndim() >= 1 &&
      static_cast<int64_t>(x.shape(-1)) * bits == static_cast<int64_t>(gate_w.shape(1)) * 32;
  if (!ours) {
    return gated_activation(quantized_matmul_rows(x, gate_w, gate_scales, gate_biases, group_size, bits),
                            quantized_matmul_rows(x, up_w, up_scales, up_biases, group_size, bits), act);
  }
  return mx::array(product_shape(x, gate_w), mx::float32, std::make_shared<QuantizedGatedCpu>(s, act, group_size, bits),
                   {x, gate_w, gate_scales, gate_biases, up_w, up_scales, up_biases});
}

mx::array dequantize_f32(const mx::array& w, const mx::array& scales, const mx::array& biases, int group_size, int bits) {
  auto s = mx::default_stream(mx::default_device());
  if (!takes(s, w, scales, biases, group_size, bits)) {
    return mx::dequantize(w, scales, biases, group_size, bits, "affine", std::nullopt, mx::float32);
  }
  mx::Shape shape{w.shape(0), static_cast<int>(static_cast<int64_t>(w.shape(1)) * 32 / bits)};
  return mx::array(std::move(shape), mx::float32, std::make_shared<QuantizedCpu>(s, Op::dequantize, group_size, bits), {w, scales, biases});
}

bool cpu_kernel_takes(int group_size, int bits) {
  return pick(bits, group_size, Op::matmul) != nullptr;
}

bool cpu_tiles_take(int group_size, int bits) {
  // Any K the packing allows is a multiple of the group size, so the group size stands for K.
  return qmm_amx_takes(bits, group_size, group_size);
}

bool cpu_many_rows_take(int group_size, int bits) {
  return cpu_tiles_take(group_size, bits) || qmm_panels_takes(bits, group_size);
}

int qmm_threads() {
  return cpu::threads();
}

}  // namespace semantic
