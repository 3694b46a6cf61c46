// MLX's fused kernels: normalization, rotary embeddings, attention, a gated MLP's gate.
import type { MxArray } from "./array.ts";
import { check, cstr, lib, out, readI32 } from "./native.ts";
import { handles, made } from "./ops.ts";

export function rmsNorm(x: MxArray, weight: MxArray | null, eps: number): MxArray {
  return made(lib().sm_rms_norm(out, x.handle, weight?.handle ?? null, eps));
}

const gateActivations = { silu: 0, gelu_tanh: 1 } as const;

/**
 * act(gate) * up, the gate of a gated MLP: SiLU (SwiGLU: Llama, Qwen) or tanh-approximated GELU
 * (GeGLU: Gemma). One pass on the CPU (ffi/glu_cpu.cpp).
 */
export function gatedActivation(gate: MxArray, up: MxArray, act: keyof typeof gateActivations): MxArray {
  return made(lib().sm_gated_activation(out, gate.handle, up.handle, gateActivations[act]));
}

export function layerNorm(x: MxArray, weight: MxArray | null, bias: MxArray | null, eps: number): MxArray {
  return made(lib().sm_layer_norm(out, x.handle, weight?.handle ?? null, bias?.handle ?? null, eps));
}

export type RopeOptions = {
  dims: number;
  /** true: rotate interleaved pairs (x0,x1),(x2,x3)...; false: halves (x[i], x[i+d/2]). */
  traditional: boolean;
  base: number;
  scale: number;
  /** Custom inverse frequencies (llama3, yarn): replaces `base` when given. */
  freqs?: MxArray | null;
};

/**
 * Rotary position embedding over the last axis of x (B, H, L, D), positions starting at
 * `offset`: one number for all rows, or an int32 array (B,) of per-sequence offsets.
 */
export function rope(x: MxArray, o: RopeOptions, offset: number | MxArray): MxArray {
  const freqs = o.freqs?.handle ?? null;
  if (typeof offset === "number") {
    return made(lib().sm_rope(out, x.handle, o.dims, o.traditional ? 1 : 0, o.base, o.scale, offset, freqs));
  }
  return made(lib().sm_rope_offsets(out, x.handle, o.dims, o.traditional ? 1 : 0, o.base, o.scale, offset.handle, freqs));
}

const maskModes = { none: cstr(""), causal: cstr("causal") };

/**
 * softmax(q k^T * scale + mask) v for q (B, Hq, L, D), k/v (B, Hkv, S, D), grouped-query heads
 * included. k and v may be lists of segments along the sequence (B, Hkv, S_i, D), read in place
 * (a request's cache blocks, then its tail). `mask` is "causal", an additive/boolean array, or
 * null. On the CPU the project's kernel (ffi/attention_cpu.cpp) computes it; elsewhere MLX's.
 */
export function scaledDotProductAttention(q: MxArray, k: KV, v: KV, scale: number, mask: "causal" | MxArray | null): MxArray {
  const ks = Array.isArray(k) ? k : [k as MxArray];
  const vs = Array.isArray(v) ? v : [v as MxArray];
  if (ks.length !== vs.length) throw new RangeError(`attention over ${ks.length} key segments and ${vs.length} value segments`);
  return made(lib().sm_sdpa(out, q.handle, handles(ks), handles(vs), ks.length, scale, ...maskArgs(mask)));
}

/**
 * Whether the CPU kernel runs on AMX tiles (ffi/attention_amx.cpp) for this many query rows per
 * key/value head (L x Hq / Hkv) and head size: on a CPU with AMX, from 16 rows.
 */
export function attentionTilesTake(rowsPerHead: number, headDim: number): boolean {
  check(lib().sm_sdpa_tiles(out, rowsPerHead, headDim));
  return readI32() === 1;
}

/** Keys or values: one array, or segments along the sequence axis. */
export type KV = MxArray | readonly MxArray[];

/** The same through MLX's own kernel on every device: a reference for tests and benchmarks. */
export function mlxScaledDotProductAttention(q: MxArray, k: MxArray, v: MxArray, scale: number, mask: "causal" | MxArray | null): MxArray {
  return made(lib().sm_sdpa_mlx(out, q.handle, k.handle, v.handle, scale, ...maskArgs(mask)));
}

function maskArgs(mask: "causal" | MxArray | null) {
  return [mask === "causal" ? maskModes.causal : maskModes.none, mask && mask !== "causal" ? mask.handle : null] as const;
}
