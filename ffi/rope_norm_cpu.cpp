// The CPU kernels behind semantic::rope and semantic::rms_norm (see rope_norm_cpu.h).

#include "rope_norm_cpu.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cpu_primitive.h"
#include "cpu_simd.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace semantic {
namespace {

using namespace cpu;

// Cosines and sines at positions firsts[b] .. firsts[b] + L - 1 for each frequency, (B, L, half).
// Every layer's queries and keys in a forward share them, so the last table is kept and reused.
struct Angles {
  std::vector<int64_t> firsts;
  int L = 0;
  float scale = 0;
  std::vector<double> inv;
  std::vector<float> cos, sin;
};

const Angles& angles(const std::vector<int64_t>& firsts, int L, float scale, const std::vector<double>& inv) {
  thread_local Angles t;
  if (t.firsts == firsts && t.L == L && t.scale == scale && t.inv == inv) return t;
  const size_t half = inv.size();
  t.firsts = firsts, t.L = L, t.scale = scale, t.inv = inv;
  t.cos.resize(firsts.size() * L * half);
  t.sin.resize(t.cos.size());
  size_t at = 0;
  for (const int64_t first : firsts) {
    for (int l = 0; l < L; l++) {
      const double pos = static_cast<double>(first + l) * scale;
      for (size_t i = 0; i < half; i++, at++) {
        const double a = pos * inv[i];
        t.cos[at] = static_cast<float>(std::cos(a));
        t.sin[at] = static_cast<float>(std::sin(a));
      }
    }
  }
  return t;
}

// Inputs: x (B, H, L, D), then int32 offsets (B,) when per sequence, then float32 periods
// (dims / 2,) when given. Angles in double, rounded once to float32 sines and cosines.
struct RopeParams {
  int dims;
  bool traditional;
  float base, scale;
  int offset;
  bool offsets, freqs;
  bool operator==(const RopeParams&) const = default;
};

class RopeCpu : public mx::UnaryPrimitive {
 public:
  RopeCpu(mx::Stream s, RopeParams p) : mx::UnaryPrimitive(s), p_(p) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [d = p_](std::vector<mx::array>& in, mx::array& out) {
      std::vector<float> xs;
      const mx::array& xa = in[0];
      const View x = view4(xa, xs);
      const int B = xa.shape(0), H = xa.shape(1), L = xa.shape(2), D = xa.shape(3), half = d.dims / 2;
      std::vector<double> inv(half);
      if (d.freqs) {
        const float* periods = in.back().data<float>();  // a 1-D float32 input: contiguous
        for (int i = 0; i < half; i++) inv[i] = 1.0 / periods[i];
      } else {
        for (int i = 0; i < half; i++) inv[i] = std::pow(static_cast<double>(d.base), -2.0 * i / d.dims);
      }
      std::vector<int64_t> firsts(B);
      for (int b = 0; b < B; b++) firsts[b] = d.offsets ? in[1].data<int32_t>()[b * in[1].strides()[0]] : d.offset;
      const Angles& t = angles(firsts, L, d.scale, inv);
      float* o = out.data<float>();
      for (int b = 0; b < B; b++) {
        for (int l = 0; l < L; l++) {
          const float* cs = t.cos.data() + (static_cast<size_t>(b) * L + l) * half;
          const float* sn = t.sin.data() + (static_cast<size_t>(b) * L + l) * half;
          for (int h = 0; h < H; h++) {
            const float* src = x.p + b * x.s0 + h * x.s1 + l * x.s2;
            float* dst = o + ((static_cast<int64_t>(b) * H + h) * L + l) * D;
            if (d.traditional) {
              for (int i = 0; i < half; i++) {
                const float x1 = src[2 * i], x2 = src[2 * i + 1];
                dst[2 * i] = x1 * cs[i] - x2 * sn[i];
                dst[2 * i + 1] = x1 * sn[i] + x2 * cs[i];
              }
            } else {
              for (int i = 0; i < half; i++) {
                const float x1 = src[i], x2 = src[i + half];
                dst[i] = x1 * cs[i] - x2 * sn[i];
                dst[i + half] = x1 * sn[i] + x2 * cs[i];
              }
            }
            for (int j = d.dims; j < D; j++) dst[j] = src[j];
          }
        }
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic rope] has no GPU kernel (use MLX's fast rope)");
  }

  const char* name() const override { return "SemanticRope"; }

  bool is_equivalent(const mx::Primitive& other) const override { return p_ == static_cast<const RopeCpu&>(other).p_; }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override { return {inputs[0].shape()}; }

 private:
  RopeParams p_;
};

// Inputs: x (..., D) and, optionally, weight (D,). Sums of squares in float32 vectors, as MLX does.
class RmsNormCpu : public mx::UnaryPrimitive {
 public:
  RmsNormCpu(mx::Stream s, float eps, bool weighted) : mx::UnaryPrimitive(s), eps_(eps), weighted_(weighted) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [eps = eps_, weighted = weighted_](std::vector<mx::array>& in, mx::array& out) {
      std::vector<float> xs, ws;
      const mx::array& xa = in[0];
      const float* x = row_contiguous(xa, xs);
      const int D = xa.shape(-1);
      const int64_t rows = static_cast<int64_t>(xa.size()) / D;
      const float* w = weighted ? row_contiguous(in[1], ws) : nullptr;
      float* o = out.data<float>();
      for (int64_t r = 0; r < rows; r++) {
        const float* src = x + r * D;
        float* dst = o + r * D;
        vf acc = vf{};
        int j = 0;
        for (; j + W <= D; j += W) {
          const vf v = loadv(src + j);
          acc += v * v;
        }
        float ss = hsum(acc);
        for (; j < D; j++) ss += src[j] * src[j];
        const float k = 1.0f / std::sqrt(ss / D + eps);
        for (j = 0; j < D; j++) dst[j] = src[j] * k * (w ? w[j] : 1.0f);
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic rms_norm] has no GPU kernel (use MLX's fast rms_norm)");
  }

  const char* name() const override { return "SemanticRmsNorm"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const RmsNormCpu&>(other);
    return eps_ == o.eps_ && weighted_ == o.weighted_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override { return {inputs[0].shape()}; }

 private:
  float eps_;
  bool weighted_;
};

bool on_cpu(const mx::Stream& s) {
  return s.device.type == mx::Device::cpu;
}

}  // namespace

mx::array rope(const mx::array& x, int dims, bool traditional, std::optional<float> base, float scale, const std::variant<int, mx::array>& offset, const std::optional<mx::array>& freqs) {
  auto s = mx::default_stream(mx::default_device());
  const auto* offsets = std::get_if<mx::array>(&offset);
  bool ours = on_cpu(s) && x.dtype() == mx::float32 && x.ndim() == 4 && dims > 0 && dims % 2 == 0 && dims <= x.shape(3) && (base.has_value() != freqs.has_value());
  if (offsets) ours = ours && offsets->dtype() == mx::int32 && offsets->ndim() == 1 && offsets->shape(0) == x.shape(0);
  if (freqs) ours = ours && freqs->dtype() == mx::float32 && freqs->ndim() == 1 && freqs->shape(0) == dims / 2;
  if (!ours) {
    if (offsets) return mx::fast::rope(x, dims, traditional, base, scale, *offsets, freqs);
    return mx::fast::rope(x, dims, traditional, base, scale, std::get<int>(offset), freqs);
  }
  std::vector<mx::array> inputs{x};
  if (offsets) inputs.push_back(*offsets);
  if (freqs) inputs.push_back(*freqs);
  auto p = std::make_shared<RopeCpu>(s, RopeParams{dims, traditional, base.value_or(0.0f), scale, offsets ? 0 : std::get<int>(offset), offsets != nullptr, freqs.has_value()});
  return mx::array(x.shape(), mx::float32, std::move(p), std::move(inputs));
}

mx::array rms_norm(const mx::array& x, const std::optional<mx::array>& weight, float eps) {
  auto s = mx::default_stream(mx::default_device());
  bool ours = on_cpu(s) && x.dtype() == mx::float32 && x.ndim() >= 1 && x.shape(-1) > 0;
  if (weight) ours = ours && weight->dtype() == mx::float32 && weight->ndim() == 1 && weight->shape(0) == x.shape(-1);
  if (!ours) return mx::fast::rms_norm(x, weight, eps);
  std::vector<mx::array> inputs{x};
  if (weight) inputs.push_back(*weight);
  return mx::array(x.shape(), mx::float32, std::make_shared<RmsNormCpu>(s, eps, weight.has_value()), std::move(inputs));
}

}  // namespace semantic
