// Counter-based PRNG keys and draws: the same key always gives the same sample.
import type { MxArray } from "./array.ts";
import { Dtype } from "./dtype.ts";
import { lib, out } from "./native.ts";
import { made } from "./ops.ts";

export function randomKey(seed: number | bigint): MxArray {
  return made(lib().sm_random_key(out, BigInt(seed)));
}

/** `num` new keys (num, 2) derived from `key`. */
export function randomSplit(key: MxArray, num = 2): MxArray {
  return made(lib().sm_random_split(out, key.handle, num));
}

/** Samples indices from unnormalized log-probabilities along `axis`. */
export function categorical(logits: MxArray, key: MxArray | null, axis = -1): MxArray {
  return made(lib().sm_random_categorical(out, logits.handle, axis, key?.handle ?? null));
}

export function uniform(shape: readonly number[], key: MxArray | null, dtype = Dtype.float32): MxArray {
  return made(lib().sm_random_uniform(out, new Int32Array(shape.length ? shape : [0]), shape.length, dtype, key?.handle ?? null));
}
