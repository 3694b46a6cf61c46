// Plain-TypeScript helpers for tests: seeded inputs and closeness checks. No MLX here, so
// the values tests compare against are computed independently of the code under test.
import { expect } from "bun:test";

/** Deterministic uniform values in [lo, hi) from a 32-bit LCG. */
export function seeded(n: number, seed = 1, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 2 ** 24) * (hi - lo);
  }
  return out;
}

/** Asserts |a - b| <= atol + rtol * |b| elementwise, naming the first offending index. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-5, label = ""): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) - rtol * Math.abs(expected[i]);
    if (!(err <= atol) && (at === -1 || err > worst)) {
      worst = err;
      at = i;
    }
  }
  if (at !== -1) {
    throw new Error(`${label} mismatch at ${at}: got ${actual[at]}, want ${expected[at]} (atol ${atol}, rtol ${rtol})`);
  }
}

/** Row-major matrix product of (m, k) and (k, n). */
export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      out[i * n + j] = s;
    }
  return out;
}

/** IEEE half-precision bits to a number. */
export function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/**
 * softmax(q k^T * scale + mask) v in float64 for q (B, Hq, L, D), k/v (B, Hkv, S, D) row-major,
 * grouped-query heads (head h reads key/value head floor(h / (Hq / Hkv))). `mask(b, h, i, j)` is
 * added to the score (-Infinity hides key j from query i). A query that sees no key gets zeros.
 */
export function attentionRef(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>,
  dims: { B?: number; Hq: number; Hkv: number; L: number; S: number; D: number }, scale: number,
  mask: (b: number, h: number, i: number, j: number) => number,
): Float64Array {
  const { B = 1, Hq, Hkv, L, S, D } = dims;
  const out = new Float64Array(B * Hq * L * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kv = (b * Hkv + Math.floor(h / (Hq / Hkv))) * S;
      for (let i = 0; i < L; i++) {
        const row = ((b * Hq + h) * L + i) * D;
        const s = Array.from({ length: S }, (_, j) => {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[row + d] * k[(kv + j) * D + d];
          return dot * scale + mask(b, h, i, j);
        });
        const m = Math.max(...s);
        if (m === -Infinity) continue;
        const e = s.map((z) => Math.exp(z - m));
        const tot = e.reduce((p, z) => p + z, 0);
        for (let j = 0; j < S; j++) for (let d = 0; d < D; d++) out[row + d] += (e[j] / tot) * v[(kv + j) * D + d];
      }
    }
  return out;
}
