// The MLX wrapper's public surface: arrays and scopes, dtypes, ops, fused and quantized ops,
// the fused sampler, randomness, files, memory and device.
export { MxArray, tidy, keep, dispose, handleCounts } from "./array.ts";
export { Dtype, itemSize, isFloating } from "./dtype.ts";
export { MlxError } from "./native.ts";
export * from "./ops.ts";
export * from "./fast.ts";
export * from "./quantized.ts";
export * from "./sampler.ts";
export * from "./random.ts";
export * from "./io.ts";
export * from "./memory.ts";
