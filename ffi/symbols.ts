// The one bun:ffi symbol table of ffi/semantic_mlx.cpp, each symbol beside its C signature.
// Nothing but shared/mlx/native.ts calls these: it checks every status and owns every handle.
// This file imports nothing of the project.
import { dlopen, FFIType } from "bun:ffi";

const { ptr, i32, u64, f32, f64, void: none } = FFIType;

const unary = { args: [ptr, ptr], returns: i32 } as const; // int sm_X(sm_array* out, sm_array a)
const binary = { args: [ptr, ptr, ptr], returns: i32 } as const; // int sm_X(sm_array* out, sm_array a, sm_array b)
const reduce = { args: [ptr, ptr, ptr, i32, i32], returns: i32 } as const; // int sm_X(out, a, const int32_t* axes, int n, int keepdims)
const withAxes = { args: [ptr, ptr, ptr, i32], returns: i32 } as const; // int sm_X(out, a, const int32_t* v, int n)
const memoryRead = { args: [ptr], returns: i32 } as const; // int sm_X(uint64_t* out)

export const symbols = {
  sm_last_error: { args: [], returns: ptr }, // const char* sm_last_error(void)
  sm_version: { args: [ptr], returns: i32 }, // int (const char** out)

  sm_gpu_available: { args: [ptr], returns: i32 }, // int (int* out)
  sm_default_device: { args: [ptr], returns: i32 }, // int (int* out): 1 gpu, 0 cpu
  sm_set_default_device: { args: [i32], returns: i32 }, // int (int gpu)
  sm_memory_active: memoryRead,
  sm_memory_peak: memoryRead,
  sm_memory_cache: memoryRead,
  sm_memory_limit: memoryRead,
  sm_memory_reset_peak: { args: [], returns: i32 }, // int (void)
  sm_memory_clear_cache: { args: [], returns: i32 }, // int (void)
  sm_set_memory_limit: { args: [ptr, u64], returns: i32 }, // int (uint64_t* previous, uint64_t limit)
  sm_set_cache_limit: { args: [ptr, u64], returns: i32 }, // int (uint64_t* previous, uint64_t limit)

  sm_array_from_data: { args: [ptr, ptr, ptr, i32, i32], returns: i32 }, // int (out, const void* data, const int32_t* shape, int ndim, int dtype)
  sm_arrays_from_data: { args: [ptr, i32, ptr, ptr, i32, i32], returns: i32 }, // int (sm_array out[n], int n, const void* const data[n], const int32_t shapes[n*ndim], int ndim, int dtype): copied in parallel
  sm_array_scalar: { args: [ptr, f64, i32], returns: i32 }, // int (out, double value, int dtype)
  sm_array_free: { args: [ptr], returns: none }, // void (sm_array)
  sm_array_ndim: { args: [ptr, ptr], returns: i32 }, // int (int* out, a)
  sm_array_shape: { args: [ptr, ptr], returns: i32 }, // int (int32_t* out, a)
  sm_array_dtype: { args: [ptr, ptr], returns: i32 }, // int (int* out, a)
  sm_array_size: { args: [ptr, ptr], returns: i32 }, // int (uint64_t* out, a)
  sm_array_nbytes: { args: [ptr, ptr], returns: i32 }, // int (uint64_t* out, a)
  sm_array_item_f64: { args: [ptr, ptr], returns: i32 }, // int (double* out, a)
  sm_array_read: { args: [ptr, ptr, u64], returns: i32 }, // int (a, void* dst, uint64 nbytes): evaluates and copies; row-contiguous only
  sm_array_is_row_contiguous: { args: [ptr, ptr], returns: i32 }, // int (int* out, a)
  sm_eval: { args: [ptr, i32], returns: i32 }, // int (const sm_array* arrays, int n)
  sm_async_eval: { args: [ptr, i32], returns: i32 }, // int (const sm_array* arrays, int n)

  sm_abs: unary, sm_negative: unary, sm_exp: unary, sm_log: unary, sm_log1p: unary,
  sm_sqrt: unary, sm_rsqrt: unary, sm_square: unary, sm_reciprocal: unary, sm_sin: unary,
  sm_cos: unary, sm_tanh: unary, sm_sigmoid: unary, sm_erf: unary, sm_floor: unary,
  sm_ceil: unary, sm_logical_not: unary, sm_isnan: unary, sm_stop_gradient: unary,
  sm_copy: unary, sm_contiguous: unary,

  sm_add: binary, sm_subtract: binary, sm_multiply: binary, sm_divide: binary,
  sm_power: binary, sm_remainder: binary, sm_maximum: binary, sm_minimum: binary,
  sm_equal: binary, sm_not_equal: binary, sm_less: binary, sm_less_equal: binary,
  sm_greater: binary, sm_greater_equal: binary, sm_logical_and: binary,
  sm_logical_or: binary, sm_matmul: binary,
  sm_where: { args: [ptr, ptr, ptr, ptr], returns: i32 }, // int (out, cond, x, y)
  sm_astype: { args: [ptr, ptr, i32], returns: i32 }, // int (out, a, int dtype)

  sm_sum: reduce, sm_mean: reduce, sm_max: reduce, sm_min: reduce, sm_prod: reduce,
  sm_logsumexp: reduce,
  sm_argmax: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (out, a, int axis, int keepdims)
  sm_argmin: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (out, a, int axis, int keepdims)
  sm_softmax: { args: [ptr, ptr, ptr, i32, i32], returns: i32 }, // int (out, a, const int32_t* axes, int n, int precise)
  sm_cumsum: { args: [ptr, ptr, i32, i32, i32], returns: i32 }, // int (out, a, int axis, int reverse, int inclusive)
  sm_sort: { args: [ptr, ptr, i32], returns: i32 }, // int (out, a, int axis)
  sm_argsort: { args: [ptr, ptr, i32], returns: i32 }, // int (out, a, int axis)
  sm_argpartition: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (out, a, int kth, int axis)
  sm_topk: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (out, a, int k, int axis)

  sm_reshape: withAxes, // int (out, a, const int32_t* shape, int n)
  sm_transpose: withAxes, // int (out, a, const int32_t* axes, int n)
  sm_squeeze: withAxes, // int (out, a, const int32_t* axes, int n)
  sm_expand_dims: withAxes, // int (out, a, const int32_t* axes, int n)
  sm_broadcast_to: withAxes, // int (out, a, const int32_t* shape, int n)
  sm_slice: { args: [ptr, ptr, ptr, ptr, ptr, i32], returns: i32 }, // int (out, a, start, stop, strides, int n)
  sm_slice_update: { args: [ptr, ptr, ptr, ptr, ptr, ptr, i32], returns: i32 }, // int (out, src, update, start, stop, strides, int n)
  sm_concatenate: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (out, const sm_array* arrays, int n, int axis)
  sm_stack: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (out, const sm_array* arrays, int n, int axis)
  sm_take: { args: [ptr, ptr, ptr, i32], returns: i32 }, // int (out, a, indices, int axis)
  sm_take_along_axis: { args: [ptr, ptr, ptr, i32], returns: i32 }, // int (out, a, indices, int axis)
  sm_put_along_axis: { args: [ptr, ptr, ptr, ptr, i32], returns: i32 }, // int (out, a, indices, values, int axis)
  sm_zeros: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (out, const int32_t* shape, int n, int dtype)
  sm_full: { args: [ptr, ptr, i32, f64, i32], returns: i32 }, // int (out, shape, int n, double value, int dtype)
  sm_arange: { args: [ptr, f64, f64, f64, i32], returns: i32 }, // int (out, double start, double stop, double step, int dtype)
  sm_tril: { args: [ptr, ptr, i32], returns: i32 }, // int (out, a, int k)
  sm_triu: { args: [ptr, ptr, i32], returns: i32 }, // int (out, a, int k)

  sm_rms_norm: { args: [ptr, ptr, ptr, f32], returns: i32 }, // int (out, x, weight|NULL, float eps)
  sm_gated_activation: { args: [ptr, ptr, ptr, i32], returns: i32 }, // int (out, gate, up, int act): act(gate) * up, act 0 silu, 1 gelu_tanh
  sm_layer_norm: { args: [ptr, ptr, ptr, ptr, f32], returns: i32 }, // int (out, x, weight|NULL, bias|NULL, float eps)
  sm_rope: { args: [ptr, ptr, i32, i32, f32, f32, i32, ptr], returns: i32 }, // int (out, x, int dims, int traditional, float base, float scale, int offset, freqs|NULL)
  sm_rope_offsets: { args: [ptr, ptr, i32, i32, f32, f32, ptr, ptr], returns: i32 }, // int (out, x, dims, traditional, base, scale, sm_array offsets, freqs|NULL)
  sm_sdpa: { args: [ptr, ptr, ptr, ptr, i32, f32, ptr, ptr], returns: i32 }, // int (out, q, const sm_array* ks, const sm_array* vs, int n, float scale, const char* mask_mode, mask|NULL)
  sm_sdpa_tiles: { args: [ptr, i32, i32], returns: i32 }, // int (int* out, int rows_per_head, int head_dim): 1 if the CPU kernel runs on AMX tiles
  sm_sdpa_mlx: { args: [ptr, ptr, ptr, ptr, f32, ptr, ptr], returns: i32 }, // int (out, q, k, v, float scale, const char* mask_mode, mask|NULL): MLX's own kernel, for tests and benchmarks

  sm_quantized_matmul: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32], returns: i32 }, // int (out, x, w, scales, biases|NULL, int transpose, int group_size, int bits)
  sm_quantized_matmul_rows: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32], returns: i32 }, // int (out, x, w, scales, biases, int group_size, int bits): the CPU kernel for few rows
  sm_quantized_gated_matmul: { args: [ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i32, i32, i32], returns: i32 }, // int (out, x, gate w, scales, biases, up w, scales, biases, int group_size, int bits, int act): act(x gate^T) * (x up^T), act 0 silu, 1 gelu_tanh
  sm_dequantize_f32: { args: [ptr, ptr, ptr, ptr, i32, i32], returns: i32 }, // int (out, w, scales, biases, int group_size, int bits): float32, same kernel
  sm_quantized_matmul_threads: { args: [ptr], returns: i32 }, // int (int* out): threads that kernel uses
  sm_quantized_cpu_takes: { args: [ptr, i32, i32], returns: i32 }, // int (int* out, int group_size, int bits): 1 if the CPU kernel takes this packing
  sm_quantized_cpu_tiles: { args: [ptr, i32, i32], returns: i32 }, // int (int* out, int group_size, int bits): 1 if AMX tiles take it (from 16 rows)
  sm_quantized_cpu_many_rows: { args: [ptr, i32, i32], returns: i32 }, // int (int* out, int group_size, int bits): 1 if it beats BLAS at every row count (AMX tiles or AVX-512 VNNI panels)
  sm_quantize: { args: [ptr, ptr, i32, i32], returns: i32 }, // int (sm_array out[3], w, int group_size, int bits)
  sm_dequantize: { args: [ptr, ptr, ptr, ptr, i32, i32, i32], returns: i32 }, // int (out, w, scales, biases|NULL, int group_size, int bits, int dtype|-1)

  sm_sample: { args: [ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr], returns: i32 }, // int (sm_array out4[4], logits, mask|NULL, bias_ids|NULL, bias_values|NULL, history|NULL, mu|NULL, const double params[16])

  sm_random_key: { args: [ptr, u64], returns: i32 }, // int (out, uint64_t seed)
  sm_random_split: { args: [ptr, ptr, i32], returns: i32 }, // int (out, key, int num)
  sm_random_categorical: { args: [ptr, ptr, i32, ptr], returns: i32 }, // int (out, logits, int axis, key|NULL)
  sm_random_uniform: { args: [ptr, ptr, i32, i32, ptr], returns: i32 }, // int (out, shape, int n, int dtype, key|NULL)

  sm_load_safetensors: { args: [ptr, ptr], returns: i32 }, // int (sm_map* out, const char* path)
  sm_load_gguf: { args: [ptr, ptr], returns: i32 }, // int (sm_map* out, const char* path)
  sm_map_free: { args: [ptr], returns: none }, // void (sm_map)
  sm_map_count: { args: [ptr, ptr, ptr], returns: i32 }, // int (int* arrays, int* meta, sm_map)
  sm_map_array: { args: [ptr, ptr, ptr, i32], returns: i32 }, // int (const char** key, sm_array* out, sm_map, int i)
  sm_map_meta: { args: [ptr, ptr, ptr, ptr, i32], returns: i32 }, // int (const char** key, int* kind, int* count, sm_map, int i)
  sm_map_meta_string: { args: [ptr, ptr, ptr, i32, i32], returns: i32 }, // int (const char** out, uint64_t* len, sm_map, int i, int j)
  sm_map_meta_array: { args: [ptr, ptr, i32], returns: i32 }, // int (sm_array* out, sm_map, int i)
  sm_save_safetensors: { args: [ptr, ptr, ptr, i32, ptr, ptr, i32], returns: i32 }, // int (path, const char** names, const sm_array*, int n, const char** keys, const char** values, int m)
} as const;

/** Opens the compiled C ABI at `path` (built by scripts/setup.ts). */
export function openMlx(path: string) {
  return dlopen(path, symbols);
}

export type MlxSymbols = ReturnType<typeof openMlx>["symbols"];
