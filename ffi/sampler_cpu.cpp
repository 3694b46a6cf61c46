// The CPU kernel behind semantic::sample (see sampler_cpu.h): llama.cpp's sampler stages
// (src/llama-sampling.cpp) in chain.ts's fixed order over one row, then an inverse-CDF draw.
//
// A stage removes a token by setting its logit to -inf, so probabilities are always renormalized
// over what is left. Before top-k the row is the vocabulary in token order; top-k compacts it to
// its k best, most likely first, and the later stages work on those k. Stages that need an order
// over the whole vocabulary (top-p, typical-p without top-k) bucket it by key and sort only the
// bucket their cut falls in.

#include "sampler_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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

constexpr float NEG_INF = -std::numeric_limits<float>::infinity();
constexpr double LN2 = 0.69314718055994530942;
constexpr int BLOCK = 256;  // weights per partial sum: the draw skips whole blocks

// The candidates a stage sees: logits x (n), -inf once removed. ids[i] is x[i]'s token after
// top-k; before it ids is null and x is the vocabulary in token order.
struct Row {
  float* x;
  int n;
  const int32_t* ids;
  int32_t token(int i) const { return ids ? ids[i] : i; }
};

// An item of an ordering: by key, then by position in the row.
struct Item {
  float key;
  int32_t index;
  bool operator<(const Item& o) const { return key < o.key || (key == o.key && index < o.index); }
};

// Buffers kept by the stream's thread from token to token: nothing is allocated per token once
// they have grown to the vocabulary.
struct Scratch {
  std::vector<float> x, w;  // the row, its weights
  std::vector<float> best;  // top-k's logits
  std::vector<int32_t> best_ids;  // and their tokens
  std::vector<Item> items, bucket;
  std::vector<double> mass;  // per bucket of keys
  std::vector<double> blocks;  // sums of BLOCK weights
  std::vector<int32_t> seen;  // the penalty window, sorted
  std::vector<float> logits_copy, bias_copy;  // strided inputs, gathered
  std::vector<int32_t> ids_copy, history_copy;
  std::vector<uint8_t> mask_copy;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// The largest logit (-inf when every token is removed).
float row_max(const Row& r) {
  vf acc = splat(NEG_INF);
  int i = 0;
  for (; i + W <= r.n; i += W) acc = vmax(loadv(r.x + i), acc);
  float m = hmax(acc);
  for (; i < r.n; i++) m = std::max(m, r.x[i]);
  return m;
}

// sum over [0, n) of vec(i) (W values from i) and, past the last whole vector, one(i): in float
// within each BLOCK, then in double; each block's sum is appended to `blocks` when given.
template <typename Vec, typename One>
double block_sum(int n, Vec vec, One one, std::vector<double>* blocks = nullptr) {
  double total = 0;
  for (int b = 0; b < n; b += BLOCK) {
    const int end = std::min(n, b + BLOCK);
    vf acc = vf{};
    int i = b;
    for (; i + W <= end; i += W) acc += vec(i);
    float sum = hsum(acc);
    for (; i < end; i++) sum += one(i);
    if (blocks) blocks->push_back(sum);
    total += sum;
  }
  return total;
}

// w = exp((x - max) * inv_t), 0 for removed tokens, in s.w; returns sum(w), each BLOCK's sum in s.blocks.
double weights(const Row& r, float max, float inv_t, Scratch& s) {
  s.w.resize(r.n);
  s.blocks.clear();
  float* w = s.w.data();
  const vf m = splat(max), k = splat(inv_t), none = splat(NEG_INF);
  const auto vec = [&](int i) {
    const vf v = loadv(r.x + i);
    const vf e = (vf)((vi)exp_nonpositive((v - m) * k) & (v > none));
    storev(w + i, e);
    return e;
  };
  const auto one = [&](int i) { return w[i] = r.x[i] == NEG_INF ? 0.0f : std::exp((r.x[i] - max) * inv_t); };
  return block_sum(r.n, vec, one, &s.blocks);
}

// H = -sum p ln p over the candidates, with p = w / total and ln p = x - max - ln total.
double entropy(const Row& r, const float* w, float max, double total) {
  const auto vec = [&](int i) {
    const vf e = loadv(w + i);
    return (vf)((vi)(e * (loadv(r.x + i) - max)) & (e > 0.0f));  // removed: 0, not 0 * -inf
  };
  const auto one = [&](int i) { return w[i] > 0 ? w[i] * (r.x[i] - max) : 0.0f; };
  return std::log(total) - block_sum(r.n, vec, one) / total;
}

// The first item, in (key, index) order, at which the running weight reaches `target` (exceeds
// it when `strict`); the last item when rounding never gets there. Without sorting them all: the
// items' weights are summed into buckets of equal key width, and only the bucket where the
// running sum gets there is sorted.
Item crossing(const std::vector<Item>& items, const float* w, double target, bool strict, Scratch& s) {
  const auto reached = [&](double sum) { return strict ? sum > target : sum >= target; };
  float lo = items[0].key, hi = lo;
  for (const Item& it : items) {
    lo = std::min(lo, it.key);
    hi = std::max(hi, it.key);
  }
  const int B = std::clamp(static_cast<int>(items.size()) / 8, 1, 4096);
  const double scale = hi > lo ? B / (static_cast<double>(hi) - lo) : 0;
  const auto bucket = [&](float key) { return std::min(B - 1, static_cast<int>((key - lo) * scale)); };  // monotone in key
  s.mass.assign(B, 0.0);
  for (const Item& it : items) s.mass[bucket(it.key)] += w[it.index];
  double cum = 0;
  for (int b = 0; b < B; b++) {
    if (s.mass[b] == 0 || !reached(cum + s.mass[b])) {
      cum += s.mass[b];
      continue;
    }
    s.bucket.clear();
    for (const Item& it : items)
      if (bucket(it.key) == b) s.bucket.push_back(it);
    std::sort(s.bucket.begin(), s.bucket.end());
    for (const Item& it : s.bucket)
      if (reached(cum += w[it.index])) return it;
  }
  return *std::max_element(items.begin(), items.end());
}

// Removes every item after `last` in (key, index) order.
void remove_after(Row& r, const std::vector<Item>& items, Item last) {
  for (const Item& it : items)
    if (last < it) r.x[it.index] = NEG_INF;
}

// The constraint: tokens it does not allow are removed.
void apply_mask(float* x, const uint8_t* allowed, int n) {
  for (int i = 0; i < n; i++) x[i] = allowed[i] ? x[i] : NEG_INF;
}

// Logit bias, then llama.cpp's penalties for a token seen c > 0 times in the window: a logit <= 0
// is multiplied by `repeat`, a positive one divided by it, then c * frequency + presence is subtracted.
void adjust(float* x, int V, const int32_t* bias_ids, const float* bias, int m, const int32_t* history, int n, const SampleParams& p, Scratch& s) {
  for (int j = 0; j < m; j++)
    if (bias_ids[j] >= 0 && bias_ids[j] < V) x[bias_ids[j]] += bias[j];
  s.seen.assign(history, history + n);
  std::sort(s.seen.begin(), s.seen.end());
  for (int i = 0; i < n;) {
    const int32_t id = s.seen[i];
    int c = 0;
    for (; i < n && s.seen[i] == id; i++) c++;
    if (id < 0 || id >= V) continue;
    const float v = x[id] <= 0 ? x[id] * p.repeat : x[id] / p.repeat;
    x[id] = v - (c * p.frequency + p.presence);
  }
}

// Top-k: the k largest logits, most likely first (ties: lower token first), exactly k as
// llama.cpp's partial sort keeps. One pass against the worst of a k-heap.
Row top_k(const Row& r, int k, Scratch& s) {
  std::vector<Item>& heap = s.items;  // key -logit: the heap's top is the worst kept
  heap.clear();
  for (int i = 0; i < k; i++) heap.push_back({-r.x[i], i});
  std::make_heap(heap.begin(), heap.end());
  float worst = -heap.front().key;
  const auto offer = [&](int i) {
    if (r.x[i] <= worst) return;  // a later token loses ties
    std::pop_heap(heap.begin(), heap.end());
    heap.back() = {-r.x[i], i};
    std::push_heap(heap.begin(), heap.end());
    worst = -heap.front().key;
  };
  int i = k;
  for (; i + W <= r.n; i += W) {
    // Most vectors have no lane above the worst kept: one compare for W tokens.
    const vi above = loadv(r.x + i) > splat(worst);
    bool any = false;
    for (int l = 0; l < W; l++) any |= above[l] != 0;
    if (any)
      for (int l = 0; l < W; l++) offer(i + l);
  }
  for (; i < r.n; i++) offer(i);
  std::sort_heap(heap.begin(), heap.end());
  s.best.resize(k);
  s.best_ids.resize(k);
  for (int j = 0; j < k; j++) {
    s.best[j] = -heap[j].key;
    s.best_ids[j] = heap[j].index;
  }
  return {s.best.data(), k, s.best_ids.data()};
}

// Top-p (nucleus): in order of probability, the tokens up to and including the first at which
// the running mass reaches p; the most likely always stays.
void top_p(Row& r, float p, Scratch& s) {
  const float max = row_max(r);
  if (p >= 1 || max == NEG_INF) return;
  const double total = weights(r, max, 1, s);
  s.items.clear();
  for (int i = 0; i < r.n; i++)
    if (r.x[i] > NEG_INF) s.items.push_back({-r.x[i], i});
  remove_after(r, s.items, crossing(s.items, s.w.data(), p * total, false, s));
}

// Min-p: keeps tokens with p >= min_p * p_max, i.e. logit >= max logit + ln(min_p).
void min_p(Row& r, float p) {
  if (p <= 0) return;
  const double floor = row_max(r) + std::log(static_cast<double>(p));
  for (int i = 0; i < r.n; i++)
    if (r.x[i] < floor) r.x[i] = NEG_INF;
}

// Locally typical: in order of |-ln p - H| (H the entropy), the tokens up to and including the
// first at which the running mass exceeds p.
void typical_p(Row& r, float p, Scratch& s) {
  const float max = row_max(r);
  if (p >= 1 || max == NEG_INF) return;
  const double total = weights(r, max, 1, s);
  // -ln p - H = c - x with ln p = x - max - ln total.
  const double c = max + std::log(total) - entropy(r, s.w.data(), max, total);
  s.items.clear();
  for (int i = 0; i < r.n; i++)
    if (r.x[i] > NEG_INF) s.items.push_back({static_cast<float>(std::fabs(r.x[i] - c)), i});
  remove_after(r, s.items, crossing(s.items, s.w.data(), p * total, true, s));
}

// Temperature 0 (llama.cpp): only the largest logit stays.
void keep_max(Row& r) {
  const float max = row_max(r);
  for (int i = 0; i < r.n; i++)
    if (r.x[i] < max) r.x[i] = NEG_INF;
}

// top-k (compacting the row) → top-p → min-p → typical-p.
Row truncate(Row r, const SampleParams& p, Scratch& s) {
  if (p.top_k > 0 && p.top_k < r.n) r = top_k(r, p.top_k, s);
  top_p(r, p.top_p, s);
  min_p(r, p.min_p);
  typical_p(r, p.typical_p, s);
  return r;
}

// Dynamic temperature (llama.cpp's temp-ext): T = lo + (hi - lo) * (H / ln n)^exponent over the n
// remaining candidates, lo = max(0, t - range), hi = t + range; plain t without a range. A single
// candidate keeps its logit (T = 1); T = 0 means keep only the maximum.
float dynamic_temperature(const Row& r, const SampleParams& p, Scratch& s) {
  if (p.dynatemp_range <= 0) return p.temperature;
  int n = 0;
  for (int i = 0; i < r.n; i++) n += r.x[i] > NEG_INF;
  if (n <= 1) return 1;
  const float lo = std::max(0.0f, p.temperature - p.dynatemp_range), hi = p.temperature + p.dynatemp_range;
  const float max = row_max(r);
  const double total = weights(r, max, 1, s);
  const double normalized = std::max(0.0, entropy(r, s.w.data(), max, total) / std::log(static_cast<double>(n)));
  return static_cast<float>(lo + (hi - lo) * std::pow(normalized, static_cast<double>(p.dynatemp_exponent)));
}

// Mirostat v2's truncation: keeps tokens whose surprise -log2 p is at most mu, and the most likely.
void mirostat_truncate(Row& r, float mu, Scratch& s) {
  const float max = row_max(r);
  if (max == NEG_INF) return;
  // -log2 p <= mu  <=>  x >= max + ln total - mu ln 2
  const double floor = max + std::log(weights(r, max, 1, s)) - mu * LN2;
  for (int i = 0; i < r.n; i++)
    if (r.x[i] < floor && r.x[i] < max) r.x[i] = NEG_INF;
}

// The inverse CDF at u: the first candidate, in the row's order, whose running weight exceeds
// u * total (s.w, s.blocks from weights()); the last weighted one when rounding leaves none.
int inverse_cdf(const Row& r, const Scratch& s, double u, double total) {
  const double target = u * total;
  double cum = 0;
  for (size_t b = 0; b < s.blocks.size(); b++) {
    if (cum + s.blocks[b] <= target) {
      cum += s.blocks[b];
      continue;
    }
    const int end = std::min(r.n, static_cast<int>(b + 1) * BLOCK);
    for (int i = static_cast<int>(b) * BLOCK; i < end; i++)
      if ((cum += s.w[i]) > target) return i;
  }
  for (int i = r.n - 1; i > 0; i--)
    if (s.w[i] > 0) return i;
  return 0;
}

// The most likely candidate (the first in the row's order on ties).
int argmax(const Row& r) {
  const float max = row_max(r);
  for (int i = 0; i < r.n; i++)
    if (r.x[i] == max) return i;
  return 0;
}

// Inputs: logits (1, V) float32, then mask (1, V) bool, bias ids (m,) int32 and values (m,)
// float32, the window (n,) int32, mu (1, 1) float32, each when its flag is set.
struct Config {
  SampleParams p;
  bool mask, bias, history;
  bool operator==(const Config&) const = default;
};

void run(const Config& c, std::vector<mx::array>& in, std::vector<mx::array>& out) {
  const SampleParams& p = c.p;
  Scratch& s = scratch();
  size_t at = 0;
  const mx::array& logits = in[at++];
  const int V = logits.shape(1);
  const float* src = row_contiguous(logits, s.logits_copy);
  s.x.assign(src, src + V);
  if (c.mask) apply_mask(s.x.data(), row_contiguous(in[at++], s.mask_copy), V);
  const int32_t* bias_ids = c.bias ? row_contiguous(in[at++], s.ids_copy) : nullptr;
  const float* bias = c.bias ? row_contiguous(in[at++], s.bias_copy) : nullptr;
  const int m = c.bias ? static_cast<int>(in[at - 1].size()) : 0;
  const int32_t* history = c.history ? row_contiguous(in[at++], s.history_copy) : nullptr;
  const int n = c.history ? static_cast<int>(in[at - 1].size()) : 0;
  float mu = p.mirostat == 2 ? in[at++].data<float>()[0] : 0.0f;
  adjust(s.x.data(), V, bias_ids, bias, m, history, p.penalty_last_n > 0 ? n : 0, p, s);

  Row r{s.x.data(), V, nullptr};
  int pick;
  double total = 0;  // of s.w, the final weights; 0 when greedy
  if (p.temperature <= 0) {
    // Greedy; typical-p is the one truncation that can remove the most likely token.
    if (p.typical_p < 1 && p.mirostat != 2) r = truncate(r, p, s);
    pick = argmax(r);
  } else if (p.mirostat == 2) {
    // As llama.cpp builds it: temperature, then mirostat v2 (which replaces top-k … dynamic temperature).
    for (int i = 0; i < V; i++) r.x[i] /= p.temperature;
    mirostat_truncate(r, mu, s);
    const float max = row_max(r);
    total = weights(r, max, 1, s);
    pick = inverse_cdf(r, s, p.u, total);
    // mu' = mu - eta (surprise - tau), the surprise -log2 p of the pick over the truncated set.
    if (total > 0) mu -= p.mirostat_eta * static_cast<float>((std::log(total) - (r.x[pick] - max)) / LN2 - p.mirostat_tau);
  } else {
    r = truncate(r, p, s);
    float t = dynamic_temperature(r, p, s);
    if (t <= 0) {
      keep_max(r);
      t = 1;
    }
    total = weights(r, row_max(r), 1 / t, s);
    pick = inverse_cdf(r, s, p.u, total);
  }

  size_t o = 0;
  const int32_t id = r.token(pick);
  out[o++].data<int32_t>()[0] = id;
  if (p.mirostat == 2) out[o++].data<float>()[0] = mu;
  if (p.penalty_last_n > 0) {
    mx::array& window = out[o++];
    const int keep = static_cast<int>(window.size()) - 1;  // the last `keep` of the history, then id
    std::copy(history + n - keep, history + n, window.data<int32_t>());
    window.data<int32_t>()[keep] = id;
  }
  if (p.probabilities) {
    float* probs = out[o++].data<float>();
    std::fill(probs, probs + V, 0.0f);
    if (total > 0) {
      for (int i = 0; i < r.n; i++) probs[r.token(i)] = static_cast<float>(s.w[i] / total);
    } else {
      probs[id] = 1;
    }
  }
}

class SamplerCpu : public mx::Primitive {
 public:
  SamplerCpu(mx::Stream s, Config c) : mx::Primitive(s), c_(c) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    dispatch(stream(), inputs, outputs, [c = c_](std::vector<mx::array>& in, std::vector<mx::array>& out) { run(c, in, out); });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[semantic sample] has no GPU kernel: it runs on the CPU stream");
  }

  const char* name() const override { return "SemanticSample"; }

  bool is_equivalent(const mx::Primitive& other) const override { return c_ == static_cast<const SamplerCpu&>(other).c_; }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    const int window = c_.history ? static_cast<int>(inputs[1 + c_.mask + 2 * c_.bias].size()) : 0;
    return shapes(inputs[0].shape(1), window);
  }

  // id (1,), then mu (1, 1), the window slid by the id, the probabilities (1, V), each when on.
  std::vector<mx::Shape> shapes(int V, int history) const {
    std::vector<mx::Shape> s{{1}};
    if (c_.p.mirostat == 2) s.push_back({1, 1});
    if (c_.p.penalty_last_n > 0) s.push_back({std::min(history + 1, c_.p.penalty_last_n)});
    if (c_.p.probabilities) s.push_back({1, V});
    return s;
  }

 private:
  Config c_;
};

}  // namespace

std::vector<mx::array> sample(const mx::array& logits, const std::optional<mx::array>& mask, const std::optional<mx::array>& bias_ids, const std::optional<mx::array>& bias_values, const std::optional<mx::array>& history, const std::optional<mx::array>& mu, const SampleParams& p) {
  // On the CPU stream on every device: the row is small, and with unified memory a GPU-made row
  // is read in place once MLX has synchronized the streams.
  const auto s = mx::default_stream(mx::Device::cpu);
  if (logits.ndim() != 2 || logits.shape(0) != 1) throw std::invalid_argument("[semantic sample] takes logits (1, V)");
  const int V = logits.shape(1);
  const auto as = [&](const mx::array& a, mx::Dtype d) { return a.dtype() == d ? a : mx::astype(a, d, s); };
  std::vector<mx::array> inputs{as(logits, mx::float32)};
  if (mask) {
    if (mask->ndim() != 2 || mask->shape(0) != 1 || mask->shape(1) != V) throw std::invalid_argument("[semantic sample] the mask must be (1, V) like the logits");
    inputs.push_back(as(*mask, mx::bool_));
  }
  if (bias_ids.has_value() != bias_values.has_value()) throw std::invalid_argument("[semantic sample] logit bias needs both ids and values");
  if (bias_ids) {
    if (bias_ids->ndim() != 1 || bias_values->ndim() != 1 || bias_ids->size() != bias_values->size()) throw std::invalid_argument("[semantic sample] logit bias ids and values must be (m,) each");
    inputs.push_back(as(*bias_ids, mx::int32));
    inputs.push_back(as(*bias_values, mx::float32));
  }
  const bool windowed = history && p.penalty_last_n > 0 && history->size() > 0;
  if (windowed) {
    if (history->ndim() != 1) throw std::invalid_argument("[semantic sample] the penalty window must be (n,)");
    inputs.push_back(as(*history, mx::int32));
  }
  if (p.mirostat == 2) {
    if (!mu || mu->size() != 1) throw std::invalid_argument("[semantic sample] mirostat 2 needs mu (1, 1)");
    inputs.push_back(as(*mu, mx::float32));
  }
  auto prim = std::make_shared<SamplerCpu>(s, Config{p, mask.has_value(), bias_ids.has_value(), windowed});
  auto shapes = prim->shapes(V, windowed ? static_cast<int>(history->size()) : 0);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  dtypes[0] = mx::int32;
  if (p.penalty_last_n > 0) dtypes[p.mirostat == 2 ? 2 : 1] = mx::int32;
  return mx::array::make_arrays(std::move(shapes), dtypes, prim, inputs);
}

}  // namespace semantic
