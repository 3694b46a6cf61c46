// The project's C ABI over MLX's C++ API, for bun:ffi.
//
// Conventions (mlx-c's, minus its exit(-1) error handler):
// - opaque handles: an `sm_array` is a heap `mlx::core::array*`; `sm_map` a loaded file;
// - every call returns int status (0 ok, 1 error) and writes results to out-parameters;
// - every C++ exception is caught here and kept as the thread's last error string;
// - only pointers and scalars cross the boundary (bun:ffi mishandles structs by value).
// Dtype codes are mlx::core::Dtype::Val's order: bool, u8, u16, u32, u64, i8, i16, i32,
// i64, f16, f32, f64, bf16, c64.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "mlx/mlx.h"
#include "attention_cpu.h"
#include "cpu_parallel.h"
#include "qmm_cpu.h"
#include "rope_norm_cpu.h"
#include "glu_cpu.h"
#include "sampler_cpu.h"

namespace mx = mlx::core;

typedef mx::array* sm_array;

struct sm_map_entry {
  std::string key;
  mx::array value;
};

struct sm_meta_entry {
  std::string key;
  int kind;  // 0 none, 1 array, 2 string, 3 string list
  std::optional<mx::array> array;
  std::string string;
  std::vector<std::string> strings;
};

// A loaded safetensors or GGUF file: arrays plus metadata, read entry by entry.
struct sm_map_t {
  std::vector<sm_map_entry> arrays;
  std::vector<sm_meta_entry> meta;
};
typedef sm_map_t* sm_map;

static thread_local std::string last_error;

// Variadic so that commas inside a braced body do not split the macro argument.
#define SM_TRY(...)                         \
  try {                                     \
    __VA_ARGS__;                            \
    return 0;                               \
  } catch (const std::exception& e) {       \
    last_error = e.what();                  \
    return 1;                               \
  } catch (...) {                           \
    last_error = "unknown C++ exception";   \
    return 1;                               \
  }

static sm_array wrap(mx::array a) {
  return new mx::array(std::move(a));
}

static mx::Dtype to_dtype(int code) {
  static const mx::Dtype table[] = {
      mx::bool_, mx::uint8, mx::uint16, mx::uint32, mx::uint64, mx::int8, mx::int16,
      mx::int32, mx::int64, mx::float16, mx::float32, mx::float64, mx::bfloat16, mx::complex64};
  if (code < 0 || code >= static_cast<int>(std::size(table))) {
    throw std::invalid_argument("unknown dtype code " + std::to_string(code));
  }
  return table[code];
}

static int from_dtype(mx::Dtype d) {
  return static_cast<int>(d.val());
}

static mx::Shape to_shape(const int32_t* dims, int n) {
  return mx::Shape(dims, dims + n);
}

static std::vector<int> to_ints(const int32_t* v, int n) {
  return std::vector<int>(v, v + n);
}

static std::vector<mx::array> to_arrays(const sm_array* v, int n) {
  std::vector<mx::array> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) out.push_back(*v[i]);
  return out;
}

static std::optional<mx::array> opt(sm_array a) {
  if (a == nullptr) return std::nullopt;
  return *a;
}

extern "C" {

const char* sm_last_error(void) {
  return last_error.c_str();
}

int sm_version(const char** out) {
  SM_TRY(*out = mx::version())
}

// ---- devices and memory ----

int sm_gpu_available(int* out) {
  SM_TRY(*out = mx::is_available(mx::Device::gpu) ? 1 : 0)
}

int sm_default_device(int* out) {
  SM_TRY(*out = mx::default_device().type == mx::Device::gpu ? 1 : 0)
}

int sm_set_default_device(int gpu) {
  SM_TRY(mx::set_default_device(gpu ? mx::Device::gpu : mx::Device::cpu))
}

int sm_memory_active(uint64_t* out) { SM_TRY(*out = mx::get_active_memory()) }
int sm_memory_peak(uint64_t* out) { SM_TRY(*out = mx::get_peak_memory()) }
int sm_memory_cache(uint64_t* out) { SM_TRY(*out = mx::get_cache_memory()) }
int sm_memory_limit(uint64_t* out) { SM_TRY(*out = mx::get_memory_limit()) }
int sm_memory_reset_peak(void) { SM_TRY(mx::reset_peak_memory()) }
int sm_memory_clear_cache(void) { SM_TRY(mx::clear_cache()) }
int sm_set_memory_limit(uint64_t* previous, uint64_t limit) {
  SM_TRY(*previous = mx::set_memory_limit(limit))
}
int sm_set_cache_limit(uint64_t* previous, uint64_t limit) {
  SM_TRY(*previous = mx::set_cache_limit(limit))
}

// ---- arrays ----

// Fresh memory's pages in one call rather than a fault each (Linux 5.14+; elsewhere, or on any
// error, the copy faults them in as before).
inline void populate(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  const uintptr_t page = 4096, begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)p, (void)bytes;
#endif
}

// n arrays of one dtype and rank from host data (shapes n x ndim), copied on the CPU kernels'
// thread pool: a KV block file makes two arrays a layer, and the copy into fresh memory (its
// page faults above all) is most of a block's load. Writes n handles.
int sm_arrays_from_data(sm_array* out, int n, const void* const* data, const int32_t* shapes, int ndim, int dtype) {
  SM_TRY({
    auto dt = to_dtype(dtype);
    std::vector<mx::array> arrays;
    arrays.reserve(n);
    for (int i = 0; i < n; i++) {
      auto sh = to_shape(shapes + static_cast<size_t>(i) * ndim, ndim);
      size_t bytes = mx::size_of(dt);
      for (auto d : sh) bytes *= static_cast<size_t>(d);
      arrays.emplace_back(mx::allocator::malloc(std::max<size_t>(bytes, 1)), std::move(sh), dt);
    }
    struct Copies {
      const void* const* from;
      std::vector<mx::array>* to;
    } copies{data, &arrays};
    semantic::cpu::parallel_for(
        [](void* ctx, int begin, int end) {
          auto& c = *static_cast<Copies*>(ctx);
          for (int i = begin; i < end; i++) {
            auto* to = (*c.to)[i].data<uint8_t>();
            const size_t bytes = (*c.to)[i].nbytes();
            populate(to, bytes);
            std::memcpy(to, c.from[i], bytes);
          }
        },
        &copies, n, 1);
    for (int i = 0; i < n; i++) out[i] = wrap(std::move(arrays[i]));
  })
}

int sm_array_from_data(sm_array* out, const void* data, const int32_t* shape, int ndim, int dtype) {
  SM_TRY({
    auto dt = to_dtype(dtype);
    auto sh = to_shape(shape, ndim);
    // The constructor reads size * itemsize bytes from `data`; the caller sized the buffer.
    switch (dt.val()) {
      case mx::Dtype::Val::bool_: *out = wrap(mx::array(static_cast<const bool*>(data), sh, dt)); break;
      case mx::Dtype::Val::uint8: *out = wrap(mx::array(static_cast<const uint8_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::uint16: *out = wrap(mx::array(static_cast<const uint16_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::uint32: *out = wrap(mx::array(static_cast<const uint32_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::uint64: *out = wrap(mx::array(static_cast<const uint64_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::int8: *out = wrap(mx::array(static_cast<const int8_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::int16: *out = wrap(mx::array(static_cast<const int16_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::int32: *out = wrap(mx::array(static_cast<const int32_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::int64: *out = wrap(mx::array(static_cast<const int64_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::float16: *out = wrap(mx::array(static_cast<const mx::float16_t*>(data), sh, dt)); break;
      case mx::Dtype::Val::float32: *out = wrap(mx::array(static_cast<const float*>(data), sh, dt)); break;
      case mx::Dtype::Val::float64: *out = wrap(mx::array(static_cast<const double*>(data), sh, dt)); break;
      case mx::Dtype::Val::bfloat16: *out = wrap(mx::array(static_cast<const mx::bfloat16_t*>(data), sh, dt)); break;
      default: throw std::invalid_argument("cannot create an array of this dtype from host data");
    }
  })
}

int sm_array_scalar(sm_array* out, double value, int dtype) {
  SM_TRY(*out = wrap(mx::astype(mx::array(value, mx::float64), to_dtype(dtype))))
}

void sm_array_free(sm_array a) {
  delete a;
}

int sm_array_ndim(int* out, sm_array a) { SM_TRY(*out = static_cast<int>(a->ndim())) }

int sm_array_shape(int32_t* out, sm_array a) {
  SM_TRY({
    for (size_t i = 0; i < a->ndim(); i++) out[i] = a->shape(static_cast<int>(i));
  })
}

int sm_array_dtype(int* out, sm_array a) { SM_TRY(*out = from_dtype(a->dtype())) }
int sm_array_size(uint64_t* out, sm_array a) { SM_TRY(*out = a->size()) }
int sm_array_nbytes(uint64_t* out, sm_array a) { SM_TRY(*out = a->nbytes()) }

int sm_array_item_f64(double* out, sm_array a) {
  SM_TRY({
    if (a->size() != 1) throw std::invalid_argument("item() needs an array of one element");
    *out = mx::astype(*a, mx::float64, mx::Device::cpu).item<double>();
  })
}

// Evaluates `a` and copies its row-contiguous data into `dst` (nbytes, the array's size in bytes), so
// JavaScript never holds a view of memory MLX may free.
int sm_array_read(sm_array a, void* dst, uint64_t nbytes) {
  SM_TRY({
    a->eval();
    if (!a->flags().row_contiguous) throw std::invalid_argument("array is not row-contiguous: make it contiguous first");
    if (nbytes != a->nbytes()) throw std::invalid_argument("destination size does not match the array's");
    if (nbytes) std::memcpy(dst, a->data<void>(), nbytes);
  })
}

int sm_array_is_row_contiguous(int* out, sm_array a) {
  SM_TRY(*out = a->flags().row_contiguous ? 1 : 0)
}

int sm_eval(const sm_array* arrays, int n) { SM_TRY(mx::eval(to_arrays(arrays, n))) }
int sm_async_eval(const sm_array* arrays, int n) { SM_TRY(mx::async_eval(to_arrays(arrays, n))) }

// ---- elementwise ops ----

#define SM_UNARY(name) \
  int sm_##name(sm_array* out, sm_array a) { SM_TRY(*out = wrap(mx::name(*a))) }
#define SM_BINARY(name) \
  int sm_##name(sm_array* out, sm_array a, sm_array b) { SM_TRY(*out = wrap(mx::name(*a, *b))) }

SM_UNARY(abs)
SM_UNARY(negative)
SM_UNARY(exp)
SM_UNARY(log)
SM_UNARY(log1p)
SM_UNARY(sqrt)
SM_UNARY(rsqrt)
SM_UNARY(square)
SM_UNARY(reciprocal)
SM_UNARY(sin)
SM_UNARY(cos)
SM_UNARY(tanh)
SM_UNARY(sigmoid)
SM_UNARY(erf)
SM_UNARY(floor)
SM_UNARY(ceil)
SM_UNARY(logical_not)
SM_UNARY(isnan)
SM_UNARY(stop_gradient)
SM_UNARY(copy)

SM_BINARY(add)
SM_BINARY(subtract)
SM_BINARY(multiply)
SM_BINARY(divide)
SM_BINARY(power)
SM_BINARY(remainder)
SM_BINARY(maximum)
SM_BINARY(minimum)
SM_BINARY(equal)
SM_BINARY(not_equal)
SM_BINARY(less)
SM_BINARY(less_equal)
SM_BINARY(greater)
SM_BINARY(greater_equal)
SM_BINARY(logical_and)
SM_BINARY(logical_or)
SM_BINARY(matmul)

int sm_where(sm_array* out, sm_array cond, sm_array x, sm_array y) {
  SM_TRY(*out = wrap(mx::where(*cond, *x, *y)))
}

int sm_astype(sm_array* out, sm_array a, int dtype) {
  SM_TRY(*out = wrap(mx::astype(*a, to_dtype(dtype))))
}

int sm_contiguous(sm_array* out, sm_array a) {
  SM_TRY(*out = wrap(mx::contiguous(*a)))
}

// ---- reductions and orderings ----

#define SM_REDUCE(name)                                                              \
  int sm_##name(sm_array* out, sm_array a, const int32_t* axes, int n, int keepdims) { \
    SM_TRY(*out = wrap(mx::name(*a, to_ints(axes, n), keepdims != 0)))               \
  }

SM_REDUCE(sum)
SM_REDUCE(mean)
SM_REDUCE(max)
SM_REDUCE(min)
SM_REDUCE(prod)
SM_REDUCE(logsumexp)

int sm_argmax(sm_array* out, sm_array a, int axis, int keepdims) {
  SM_TRY(*out = wrap(mx::argmax(*a, axis, keepdims != 0)))
}
int sm_argmin(sm_array* out, sm_array a, int axis, int keepdims) {
  SM_TRY(*out = wrap(mx::argmin(*a, axis, keepdims != 0)))
}
int sm_softmax(sm_array* out, sm_array a, const int32_t* axes, int n, int precise) {
  SM_TRY(*out = wrap(mx::softmax(*a, to_ints(axes, n), precise != 0)))
}
int sm_cumsum(sm_array* out, sm_array a, int axis, int reverse, int inclusive) {
  SM_TRY(*out = wrap(mx::cumsum(*a, axis, reverse != 0, inclusive != 0)))
}
int sm_sort(sm_array* out, sm_array a, int axis) { SM_TRY(*out = wrap(mx::sort(*a, axis))) }
int sm_argsort(sm_array* out, sm_array a, int axis) { SM_TRY(*out = wrap(mx::argsort(*a, axis))) }
int sm_argpartition(sm_array* out, sm_array a, int kth, int axis) {
  SM_TRY(*out = wrap(mx::argpartition(*a, kth, axis)))
}
int sm_topk(sm_array* out, sm_array a, int k, int axis) { SM_TRY(*out = wrap(mx::topk(*a, k, axis))) }

// ---- shapes, indexing, construction ----

int sm_reshape(sm_array* out, sm_array a, const int32_t* shape, int n) {
  SM_TRY(*out = wrap(mx::reshape(*a, to_shape(shape, n))))
}
int sm_transpose(sm_array* out, sm_array a, const int32_t* axes, int n) {
  SM_TRY(*out = wrap(mx::transpose(*a, to_ints(axes, n))))
}
int sm_squeeze(sm_array* out, sm_array a, const int32_t* axes, int n) {
  SM_TRY(*out = wrap(mx::squeeze(*a, to_ints(axes, n))))
}
int sm_expand_dims(sm_array* out, sm_array a, const int32_t* axes, int n) {
  SM_TRY(*out = wrap(mx::expand_dims(*a, to_ints(axes, n))))
}
int sm_broadcast_to(sm_array* out, sm_array a, const int32_t* shape, int n) {
  SM_TRY(*out = wrap(mx::broadcast_to(*a, to_shape(shape, n))))
}
int sm_slice(sm_array* out, sm_array a, const int32_t* start, const int32_t* stop, const int32_t* strides, int n) {
  SM_TRY(*out = wrap(mx::slice(*a, to_shape(start, n), to_shape(stop, n), to_shape(strides, n))))
}
int sm_slice_update(sm_array* out, sm_array src, sm_array update, const int32_t* start, const int32_t* stop, const int32_t* strides, int n) {
  SM_TRY(*out = wrap(mx::slice_update(*src, *update, to_shape(start, n), to_shape(stop, n), to_shape(strides, n))))
}
int sm_concatenate(sm_array* out, const sm_array* arrays, int n, int axis) {
  SM_TRY(*out = wrap(mx::concatenate(to_arrays(arrays, n), axis)))
}
int sm_stack(sm_array* out, const sm_array* arrays, int n, int axis) {
  SM_TRY(*out = wrap(mx::stack(to_arrays(arrays, n), axis)))
}
int sm_take(sm_array* out, sm_array a, sm_array indices, int axis) {
  SM_TRY(*out = wrap(mx::take(*a, *indices, axis)))
}
int sm_take_along_axis(sm_array* out, sm_array a, sm_array indices, int axis) {
  SM_TRY(*out = wrap(mx::take_along_axis(*a, *indices, axis)))
}
int sm_put_along_axis(sm_array* out, sm_array a, sm_array indices, sm_array values, int axis) {
  SM_TRY(*out = wrap(mx::put_along_axis(*a, *indices, *values, axis)))
}
int sm_zeros(sm_array* out, const int32_t* shape, int n, int dtype) {
  SM_TRY(*out = wrap(mx::zeros(to_shape(shape, n), to_dtype(dtype))))
}
int sm_full(sm_array* out, const int32_t* shape, int n, double value, int dtype) {
  SM_TRY(*out = wrap(mx::full(to_shape(shape, n), mx::array(value, mx::float64), to_dtype(dtype))))
}
int sm_arange(sm_array* out, double start, double stop, double step, int dtype) {
  SM_TRY(*out = wrap(mx::arange(start, stop, step, to_dtype(dtype))))
}
int sm_tril(sm_array* out, sm_array a, int k) { SM_TRY(*out = wrap(mx::tril(*a, k))) }
int sm_triu(sm_array* out, sm_array a, int k) { SM_TRY(*out = wrap(mx::triu(*a, k))) }

// ---- fast (fused) ops ----
// RMS norm and RoPE go through the project's CPU kernels on the CPU (ffi/rope_norm_cpu.cpp).

int sm_rms_norm(sm_array* out, sm_array x, sm_array weight, float eps) {
  SM_TRY(*out = wrap(semantic::rms_norm(*x, opt(weight), eps)))
}
// act(gate) * up, act 0 = SiLU, 1 = tanh-approximated GELU: the project's CPU kernel on the CPU
// (ffi/glu_cpu.cpp), MLX's ops elsewhere.
int sm_gated_activation(sm_array* out, sm_array gate, sm_array up, int act) {
  SM_TRY({
    if (act != 0 && act != 1) throw std::invalid_argument("gated activation: act must be 0 (silu) or 1 (gelu_tanh)");
    *out = wrap(semantic::gated_activation(*gate, *up, act == 0 ? semantic::GateActivation::silu : semantic::GateActivation::gelu_tanh));
  })
}
int sm_layer_norm(sm_array* out, sm_array x, sm_array weight, sm_array bias, float eps) {
  SM_TRY(*out = wrap(mx::fast::layer_norm(*x, opt(weight), opt(bias), eps)))
}
// `freqs` null means frequencies from `base`; with `freqs`, `base` is ignored (MLX requires one).
int sm_rope(sm_array* out, sm_array x, int dims, int traditional, float base, float scale, int offset, sm_array freqs) {
  SM_TRY({
    std::optional<float> b = freqs ? std::nullopt : std::optional<float>(base);
    *out = wrap(semantic::rope(*x, dims, traditional != 0, b, scale, offset, opt(freqs)));
  })
}
// Per-sequence offsets (an int32 array of shape (B,)), for batched decode at different positions.
int sm_rope_offsets(sm_array* out, sm_array x, int dims, int traditional, float base, float scale, sm_array offsets, sm_array freqs) {
  SM_TRY({
    std::optional<float> b = freqs ? std::nullopt : std::optional<float>(base);
    *out = wrap(semantic::rope(*x, dims, traditional != 0, b, scale, *offsets, opt(freqs)));
  })
}
// mask_mode: "" (none or explicit mask array) or "causal". On the CPU, the project's kernel
// (ffi/attention_cpu.cpp); elsewhere, and for inputs that kernel does not take, MLX's.
// Keys and values as n segments along the sequence (ffi/attention_cpu.h), e.g. cache blocks.
int sm_sdpa(sm_array* out, sm_array q, const sm_array* ks, const sm_array* vs, int n, float scale, const char* mask_mode, sm_array mask) {
  SM_TRY(*out = wrap(semantic::attention(*q, to_arrays(ks, n), to_arrays(vs, n), scale, std::string(mask_mode), opt(mask))))
}
int sm_sdpa_tiles(int* out, int rows_per_head, int head_dim) { SM_TRY(*out = semantic::attention_on_tiles(rows_per_head, head_dim) ? 1 : 0) }
// MLX's own attention, whatever the device: the reference the CPU kernel is tested and measured against.
int sm_sdpa_mlx(sm_array* out, sm_array q, sm_array k, sm_array v, float scale, const char* mask_mode, sm_array mask) {
  SM_TRY(*out = wrap(mx::fast::scaled_dot_product_attention(*q, *k, *v, scale, std::string(mask_mode), opt(mask))))
}

// ---- quantization (affine mode, as load_gguf and mlx-community produce) ----

int sm_quantized_matmul(sm_array* out, sm_array x, sm_array w, sm_array scales, sm_array biases, int transpose, int group_size, int bits) {
  SM_TRY(*out = wrap(mx::quantized_matmul(*x, *w, *scales, opt(biases), transpose != 0, group_size, bits)))
}
// The same product through the project's CPU kernel for few rows (ffi/qmm_cpu.cpp); on the GPU
// and for inputs that kernel does not take it is mx::quantized_matmul. Transposed layout only.
int sm_quantized_matmul_rows(sm_array* out, sm_array x, sm_array w, sm_array scales, sm_array biases, int group_size, int bits) {
  SM_TRY(*out = wrap(semantic::quantized_matmul_rows(*x, *w, *scales, *biases, group_size, bits)))
}
// act(x @ gate.T) * (x @ up.T) in one kernel on the CPU (see qmm_cpu.h).
int sm_quantized_gated_matmul(sm_array* out, sm_array x, sm_array gw, sm_array gs, sm_array gb, sm_array uw, sm_array us, sm_array ub, int group_size, int bits, int act) {
  SM_TRY({
    if (act != 0 && act != 1) throw std::invalid_argument("gated matmul: act must be 0 (silu) or 1 (gelu_tanh)");
    *out = wrap(semantic::quantized_gated_matmul(*x, *gw, *gs, *gb, *uw, *us, *ub, group_size, bits, act == 0 ? semantic::GateActivation::silu : semantic::GateActivation::gelu_tanh));
  })
}
// dequantize to float32 through the same kernel (mx::dequantize off the CPU).
int sm_dequantize_f32(sm_array* out, sm_array w, sm_array scales, sm_array biases, int group_size, int bits) {
  SM_TRY(*out = wrap(semantic::dequantize_f32(*w, *scales, *biases, group_size, bits)))
}
int sm_quantized_matmul_threads(int* out) { SM_TRY(*out = semantic::qmm_threads()) }
int sm_quantized_cpu_takes(int* out, int group_size, int bits) { SM_TRY(*out = semantic::cpu_kernel_takes(group_size, bits) ? 1 : 0) }
int sm_quantized_cpu_tiles(int* out, int group_size, int bits) { SM_TRY(*out = semantic::cpu_tiles_take(group_size, bits) ? 1 : 0) }
int sm_quantized_cpu_many_rows(int* out, int group_size, int bits) { SM_TRY(*out = semantic::cpu_many_rows_take(group_size, bits) ? 1 : 0) }
// Writes three handles: packed weights, scales, biases.
int sm_quantize(sm_array* out3, sm_array w, int group_size, int bits) {
  SM_TRY({
    auto r = mx::quantize(*w, group_size, bits);
    if (r.size() != 3) throw std::runtime_error("quantize returned an unexpected number of arrays");
    for (int i = 0; i < 3; i++) out3[i] = wrap(r[i]);
  })
}
int sm_dequantize(sm_array* out, sm_array w, sm_array scales, sm_array biases, int group_size, int bits, int dtype) {
  SM_TRY({
    std::optional<mx::Dtype> dt = dtype < 0 ? std::nullopt : std::optional<mx::Dtype>(to_dtype(dtype));
    *out = wrap(mx::dequantize(*w, *scales, opt(biases), group_size, bits, "affine", std::nullopt, dt));
  })
}

// ---- sampling ----

// The sampler chain over one row of logits (1, V) in one CPU op (ffi/sampler_cpu.cpp). `params`
// holds 16 doubles: temperature, top_k, top_p, min_p, typical_p, repetition, frequency and
// presence penalties, penalty_last_n, dynatemp range and exponent, mirostat (0 or 2), its tau
// and eta, the draw's uniform u, and 1 to output the probabilities. Writes out4: the id (1,)
// int32, then the new mu, the new penalty window and the probabilities, each NULL when off.
int sm_sample(sm_array* out4, sm_array logits, sm_array mask, sm_array bias_ids, sm_array bias_values, sm_array history, sm_array mu, const double* params) {
  SM_TRY({
    const auto f = [&](int i) { return static_cast<float>(params[i]); };
    const auto n = [&](int i) { return static_cast<int>(std::min(params[i], 2147483647.0)); };
    // In SampleParams' order.
    const semantic::SampleParams p{f(0), n(1), f(2), f(3), f(4), f(5), f(6), f(7), n(8), f(9), f(10), n(11), f(12), f(13), params[14], params[15] != 0};
    auto r = semantic::sample(*logits, opt(mask), opt(bias_ids), opt(bias_values), opt(history), opt(mu), p);
    size_t i = 0;
    out4[0] = wrap(r[i++]);
    out4[1] = p.mirostat == 2 ? wrap(r[i++]) : nullptr;
    out4[2] = p.penalty_last_n > 0 ? wrap(r[i++]) : nullptr;
    out4[3] = p.probabilities ? wrap(r[i++]) : nullptr;
  })
}

// ---- random ----

int sm_random_key(sm_array* out, uint64_t seed) { SM_TRY(*out = wrap(mx::random::key(seed))) }
int sm_random_split(sm_array* out, sm_array key, int num) {
  SM_TRY(*out = wrap(mx::random::split(*key, num)))
}
int sm_random_categorical(sm_array* out, sm_array logits, int axis, sm_array key) {
  SM_TRY(*out = wrap(mx::random::categorical(*logits, axis, opt(key))))
}
int sm_random_uniform(sm_array* out, const int32_t* shape, int n, int dtype, sm_array key) {
  SM_TRY(*out = wrap(mx::random::uniform(to_shape(shape, n), to_dtype(dtype), opt(key))))
}

// ---- files ----

static sm_map map_from_arrays(std::unordered_map<std::string, mx::array> arrays) {
  auto m = new sm_map_t();
  for (auto& [k, v] : arrays) m->arrays.push_back({k, v});
  return m;
}

int sm_load_safetensors(sm_map* out, const char* path) {
  SM_TRY({
    auto [arrays, meta] = mx::load_safetensors(std::string(path));
    auto m = map_from_arrays(std::move(arrays));
    for (auto& [k, v] : meta) m->meta.push_back({k, 2, std::nullopt, v, {}});
    *out = m;
  })
}

int sm_load_gguf(sm_map* out, const char* path) {
  SM_TRY({
    auto [arrays, meta] = mx::load_gguf(std::string(path));
    auto m = map_from_arrays(std::move(arrays));
    for (auto& [k, v] : meta) {
      sm_meta_entry e{k, 0, std::nullopt, "", {}};
      if (auto a = std::get_if<mx::array>(&v)) {
        e.kind = 1;
        e.array = *a;
      } else if (auto s = std::get_if<std::string>(&v)) {
        e.kind = 2;
        e.string = *s;
      } else if (auto l = std::get_if<std::vector<std::string>>(&v)) {
        e.kind = 3;
        e.strings = *l;
      }
      m->meta.push_back(std::move(e));
    }
    *out = m;
  })
}

void sm_map_free(sm_map m) {
  delete m;
}

int sm_map_count(int* arrays, int* meta, sm_map m) {
  SM_TRY({
    *arrays = static_cast<int>(m->arrays.size());
    *meta = static_cast<int>(m->meta.size());
  })
}

static void check_index(int i, size_t n) {
  if (i < 0 || static_cast<size_t>(i) >= n) throw std::out_of_range("map index out of range");
}

int sm_map_array(const char** key, sm_array* out, sm_map m, int i) {
  SM_TRY({
    check_index(i, m->arrays.size());
    *key = m->arrays[i].key.c_str();
    *out = wrap(m->arrays[i].value);
  })
}

int sm_map_meta(const char** key, int* kind, int* count, sm_map m, int i) {
  SM_TRY({
    check_index(i, m->meta.size());
    auto& e = m->meta[i];
    *key = e.key.c_str();
    *kind = e.kind;
    *count = e.kind == 3 ? static_cast<int>(e.strings.size()) : 1;
  })
}

int sm_map_meta_string(const char** out, uint64_t* length, sm_map m, int i, int j) {
  SM_TRY({
    check_index(i, m->meta.size());
    auto& e = m->meta[i];
    if (e.kind == 2) {
      *out = e.string.data();
      *length = e.string.size();
    } else if (e.kind == 3) {
      check_index(j, e.strings.size());
      *out = e.strings[j].data();
      *length = e.strings[j].size();
    } else {
      throw std::invalid_argument("metadata entry " + e.key + " is not a string");
    }
  })
}

int sm_map_meta_array(sm_array* out, sm_map m, int i) {
  SM_TRY({
    check_index(i, m->meta.size());
    auto& e = m->meta[i];
    if (e.kind != 1) throw std::invalid_argument("metadata entry " + e.key + " is not an array");
    *out = wrap(*e.array);
  })
}

int sm_save_safetensors(const char* path, const char** names, const sm_array* arrays, int n, const char** meta_keys, const char** meta_values, int m) {
  SM_TRY({
    std::unordered_map<std::string, mx::array> a;
    for (int i = 0; i < n; i++) a.insert({names[i], *arrays[i]});
    std::unordered_map<std::string, std::string> meta;
    for (int i = 0; i < m; i++) meta[meta_keys[i]] = meta_values[i];
    mx::save_safetensors(std::string(path), std::move(a), std::move(meta));
  })
}

}  // extern "C"
