// MLX dtypes as the C ABI numbers them (mlx::core::Dtype::Val order).

export enum Dtype {
  bool = 0,
  uint8 = 1,
  uint16 = 2,
  uint32 = 3,
  uint64 = 4,
  int8 = 5,
  int16 = 6,
  int32 = 7,
  int64 = 8,
  float16 = 9,
  float32 = 10,
  float64 = 11,
  bfloat16 = 12,
  complex64 = 13,
}

const itemSizes: Record<Dtype, number> = {
  [Dtype.bool]: 1, [Dtype.uint8]: 1, [Dtype.uint16]: 2, [Dtype.uint32]: 4, [Dtype.uint64]: 8,
  [Dtype.int8]: 1, [Dtype.int16]: 2, [Dtype.int32]: 4, [Dtype.int64]: 8,
  [Dtype.float16]: 2, [Dtype.float32]: 4, [Dtype.float64]: 8, [Dtype.bfloat16]: 2, [Dtype.complex64]: 8,
};

export function itemSize(d: Dtype): number {
  return itemSizes[d];
}

export function isFloating(d: Dtype): boolean {
  return d === Dtype.float16 || d === Dtype.float32 || d === Dtype.float64 || d === Dtype.bfloat16;
}

/** Safetensors' dtype names, as written in file headers. */
export const safetensorsNames: Record<string, Dtype> = {
  BOOL: Dtype.bool, U8: Dtype.uint8, U16: Dtype.uint16, U32: Dtype.uint32, U64: Dtype.uint64,
  I8: Dtype.int8, I16: Dtype.int16, I32: Dtype.int32, I64: Dtype.int64,
  F16: Dtype.float16, F32: Dtype.float32, F64: Dtype.float64, BF16: Dtype.bfloat16, C64: Dtype.complex64,
};

export type HostArray =
  | Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array
  | Uint8Array | Uint16Array | Uint32Array | BigUint64Array;

/** A typed-array view over `bytes` bytes at `buffer` for dtype `d` (16-bit floats as raw Uint16). */
export function viewOf(d: Dtype, buffer: ArrayBuffer, byteOffset = 0, length?: number): HostArray {
  switch (d) {
    case Dtype.float32: return new Float32Array(buffer, byteOffset, length);
    case Dtype.float64: return new Float64Array(buffer, byteOffset, length);
    case Dtype.int8: return new Int8Array(buffer, byteOffset, length);
    case Dtype.int16: return new Int16Array(buffer, byteOffset, length);
    case Dtype.int32: return new Int32Array(buffer, byteOffset, length);
    case Dtype.int64: return new BigInt64Array(buffer, byteOffset, length);
    case Dtype.bool:
    case Dtype.uint8: return new Uint8Array(buffer, byteOffset, length);
    case Dtype.float16:
    case Dtype.bfloat16:
    case Dtype.uint16: return new Uint16Array(buffer, byteOffset, length);
    case Dtype.uint32: return new Uint32Array(buffer, byteOffset, length);
    case Dtype.uint64: return new BigUint64Array(buffer, byteOffset, length);
    default: throw new Error(`no host view for dtype ${Dtype[d]}`);
  }
}
