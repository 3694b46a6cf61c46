// The project's CPU attention kernel (ffi/attention_cpu.cpp; from 16 query rows per key/value
// head on AMX tiles, ffi/attention_amx.cpp, where the CPU has them) against attention computed
// in plain TypeScript (float64) and against MLX's own kernel, over the layouts the models
// produce: grouped-query heads, causal prefill chunks over a cache, decode rows, padded and
// windowed batch masks, views of larger cache buffers.
import { describe, expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";
import { Dtype, type MxArray } from "../../shared/mlx/index.ts";
import { attentionRef, expectClose, seeded } from "../helpers/numeric.ts";

const f32 = (data: ArrayLike<number>, shape: number[]) => mx.array(Float32Array.from(data), shape);
const values = (a: MxArray) => Array.from(a.toFloat32());
const visible = () => 0;

type Case = { B?: number; Hq: number; Hkv: number; L: number; S: number; D: number };

/**
 * Tolerances (absolute, relative): float32 throughout, or on tiles, whose 16-bit operands give
 * ~2^-17 of the terms' magnitudes (~1e-5 on these scores and outputs). A wrong mask, tile or
 * segment is off by more than 1e-2.
 */
const tol = (c: Case): [number, number] => (mx.attentionTilesTake((c.L * c.Hq) / c.Hkv, c.D) ? [1e-4, 1e-4] : [2e-6, 1e-5]);

function inputs(c: Case, seed: number) {
  const B = c.B ?? 1;
  const q = seeded(B * c.Hq * c.L * c.D, seed), k = seeded(B * c.Hkv * c.S * c.D, seed + 1), v = seeded(B * c.Hkv * c.S * c.D, seed + 2);
  return { q, k, v, Q: f32(q, [B, c.Hq, c.L, c.D]), K: f32(k, [B, c.Hkv, c.S, c.D]), V: f32(v, [B, c.Hkv, c.S, c.D]) };
}

describe("attention on the CPU (project kernel)", () => {
  // Head shapes of SmolLM2 (9 query heads over 3), Qwen (128) and Gemma 3 (256). Key counts
  // around the 64-key tile; query rows per key/value head below and above 16 (the tiles' least)
  // and over several work items.
  const shapes: Case[] = [
    { Hq: 9, Hkv: 3, L: 1, S: 1, D: 64 },
    { Hq: 9, Hkv: 3, L: 1, S: 65, D: 64 },
    { Hq: 9, Hkv: 3, L: 7, S: 63, D: 64 },
    { Hq: 9, Hkv: 3, L: 40, S: 200, D: 64 },
    { Hq: 4, Hkv: 1, L: 5, S: 64, D: 128 },
    { Hq: 2, Hkv: 1, L: 3, S: 130, D: 256 },
    { Hq: 2, Hkv: 1, L: 20, S: 130, D: 256 },
    { Hq: 8, Hkv: 2, L: 45, S: 300, D: 128 },
    { Hq: 4, Hkv: 4, L: 33, S: 33, D: 64 },
  ];
  for (const c of shapes) {
    test(`Hq ${c.Hq} / Hkv ${c.Hkv}, L ${c.L}, S ${c.S}, D ${c.D}: causal and unmasked match the reference`, () => {
      mx.tidy(() => {
        const { q, k, v, Q, K, V } = inputs(c, c.S + c.L + c.D);
        const scale = 1 / Math.sqrt(c.D);
        const causal = attentionRef(q, k, v, c, scale, (_b, _h, i, j) => (j <= i + c.S - c.L ? 0 : -Infinity));
        expectClose(values(mx.scaledDotProductAttention(Q, K, V, scale, "causal")), causal, ...tol(c), "causal");
        expectClose(values(mx.scaledDotProductAttention(Q, K, V, scale, null)), attentionRef(q, k, v, c, scale, visible), ...tol(c), "none");
      });
    });
  }

  test("a batch with left padding and a sliding window (a boolean (B, 1, L, S) mask) matches the reference", () => {
    mx.tidy(() => {
      const c = { B: 3, Hq: 9, Hkv: 3, L: 4, S: 150, D: 64 };
      const { q, k, v, Q, K, V } = inputs(c, 5);
      // Row b's tokens start at column first[b]; query i sits at column S - L + i; window 70.
      const first = [0, 37, 149 - 3];
      const sees = (b: number, i: number, j: number) => j >= first[b] && j <= c.S - c.L + i && j > c.S - c.L + i - 70;
      const mask = mx.array(Uint8Array.from({ length: c.B * c.L * c.S }, (_, n) => {
        const b = Math.floor(n / (c.L * c.S)), i = Math.floor(n / c.S) % c.L, j = n % c.S;
        return sees(b, i, j) ? 1 : 0;
      }), [c.B, 1, c.L, c.S], Dtype.bool);
      const want = attentionRef(q, k, v, c, 0.125, (b, _h, i, j) => (sees(b, i, j) ? 0 : -Infinity));
      expectClose(values(mx.scaledDotProductAttention(Q, K, V, 0.125, mask)), want, ...tol(c), "masked batch");
    });
  });

  test("keys and values as segments (cache blocks, then a tail view), any lengths, read in place", () => {
    mx.tidy(() => {
      // Blocks of 256 and 100 (a tile straddles segments), a short tail in a larger buffer,
      // a one-key segment; decode rows, a prefill chunk, and a windowed mask.
      for (const [L, lens] of [[1, [256, 256, 37]], [40, [100, 100, 1, 91]], [120, [256, 64, 130]]] as const) {
        const S = lens.reduce((a, b) => a + b, 0);
        const c = { B: 2, Hq: 9, Hkv: 3, L, S, D: 64 };
        const { q, k, v, Q, K, V } = inputs(c, L + S);
        const cut = (X: MxArray) => {
          let at = 0;
          return lens.map((n, i) => {
            const part = mx.slice(X, [0, 0, at, 0], [2, 3, (at += n), 64]);
            if (i < lens.length - 1) return mx.contiguous(part);
            const buffer = mx.concatenate([part, mx.zeros([2, 3, 50, 64])], 2); // spare room, as a tail holds
            return mx.slice(buffer, [0, 0, 0, 0], [2, 3, n, 64]);
          });
        };
        const ks = cut(K), vs = cut(V);
        const causal = attentionRef(q, k, v, c, 0.125, (_b, _h, i, j) => (j <= i + S - L ? 0 : -Infinity));
        expectClose(values(mx.scaledDotProductAttention(Q, ks, vs, 0.125, "causal")), causal, ...tol(c), `segments ${lens}`);
        const sees = (i: number, j: number) => j <= S - L + i && j > S - L + i - 200;
        const mask = mx.array(Uint8Array.from({ length: L * S }, (_, n) => (sees(Math.floor(n / S), n % S) ? 1 : 0)), [1, 1, L, S], Dtype.bool);
        const windowed = attentionRef(q, k, v, c, 0.125, (_b, _h, i, j) => (sees(i, j) ? 0 : -Infinity));
        expectClose(values(mx.scaledDotProductAttention(Q, ks, vs, 0.125, mask)), windowed, ...tol(c), `windowed segments ${lens}`);
        // MLX's path (off the CPU kernel) joins the segments: same answer.
        expectClose(values(mx.scaledDotProductAttention(Q, ks, vs, 0.125, "causal")), values(mx.mlxScaledDotProductAttention(Q, K, V, 0.125, "causal")), ...tol(c), "mlx");
      }
    });
  });

  test("keys and values as views of a larger cache buffer, queries transposed from (B, L, H, D)", () => {
    mx.tidy(() => {
      const c = { Hq: 9, Hkv: 3, L: 6, S: 100, D: 64 };
      const { q, k, v } = inputs(c, 9);
      // The caches hold 256 columns, the first S used: a strided view, as the models pass it.
      const buffer = (x: Float32Array) => mx.sliceUpdate(mx.zeros([1, c.Hkv, 256, c.D]), f32(x, [1, c.Hkv, c.S, c.D]), [0, 0, 0, 0], [1, c.Hkv, c.S, c.D]);
      const K = mx.slice(buffer(k), [0, 0, 0, 0], [1, c.Hkv, c.S, c.D]);
      const V = mx.slice(buffer(v), [0, 0, 0, 0], [1, c.Hkv, c.S, c.D]);
      const qT = new Float32Array(q.length); // (1, L, Hq, D)
      for (let h = 0; h < c.Hq; h++) for (let i = 0; i < c.L; i++) for (let d = 0; d < c.D; d++) qT[(i * c.Hq + h) * c.D + d] = q[(h * c.L + i) * c.D + d];
      const Q = mx.transpose(f32(qT, [1, c.L, c.Hq, c.D]), [0, 2, 1, 3]);
      const want = attentionRef(q, k, v, c, 0.125, (_b, _h, i, j) => (j <= i + c.S - c.L ? 0 : -Infinity));
      expectClose(values(mx.scaledDotProductAttention(Q, K, V, 0.125, "causal")), want, ...tol(c), "views");
      // Keys whose last axis is not contiguous (a transposed (1, H, D, S) array) are copied first.
      const Kt = mx.transpose(mx.contiguous(mx.transpose(K, [0, 1, 3, 2])), [0, 1, 3, 2]);
      expectClose(values(mx.scaledDotProductAttention(Q, Kt, V, 0.125, "causal")), want, ...tol(c), "transposed keys");
    });
  });

  test("a prefill chunk over a long cache (split over threads) agrees with MLX's own attention", () => {
    mx.tidy(() => {
      const c = { Hq: 9, Hkv: 3, L: 120, S: 900, D: 64 };
      const { Q, K, V } = inputs(c, 21);
      for (const mask of ["causal", null] as const) {
        const ours = values(mx.scaledDotProductAttention(Q, K, V, 0.125, mask));
        const mlx = values(mx.mlxScaledDotProductAttention(Q, K, V, 0.125, mask));
        expectClose(ours, mlx, ...tol(c), `vs MLX (${mask})`);
      }
    });
  });

  test("a turn over a long cache (each head's keys in two parts, merged) matches the reference, rows seeing one part or none included", () => {
    mx.tidy(() => {
      // One block of rows per head, in two sizes of head; then 600 rows per head: two blocks.
      for (const [D, Hq, Hkv, L] of [[64, 4, 2, 40], [128, 4, 2, 40], [64, 9, 3, 200]]) {
        const c = { B: 3, Hq, Hkv, L, S: 700, D };
        const { q, k, v, Q, K, V } = inputs(c, 51 + D);
        // Sequence 0 is causal over the whole cache; 1 sees only the first 100 keys (the first
        // part); 2 sees only its last 50 (the second part), and its query 0 none at all.
        const sees = (b: number, i: number, j: number) =>
          b === 0 ? j <= c.S - c.L + i : b === 1 ? j < 100 : i > 0 && j >= c.S - 50 && j <= c.S - c.L + i;
        const mask = mx.array(Uint8Array.from({ length: c.B * c.L * c.S }, (_, n) => {
          const b = Math.floor(n / (c.L * c.S)), i = Math.floor(n / c.S) % c.L, j = n % c.S;
          return sees(b, i, j) ? 1 : 0;
        }), [c.B, 1, c.L, c.S], Dtype.bool);
        const got = values(mx.scaledDotProductAttention(Q, K, V, 0.125, mask));
        expectClose(got, attentionRef(q, k, v, c, 0.125, (b, _h, i, j) => (sees(b, i, j) ? 0 : -Infinity)), ...tol(c), `parts, D ${D}`);
        for (let h = 0; h < c.Hq; h++) expect(got.slice(((2 * c.Hq + h) * c.L) * D, ((2 * c.Hq + h) * c.L + 1) * D).every((x) => x === 0)).toBe(true);
        expectClose(values(mx.scaledDotProductAttention(Q, K, V, 0.125, "causal")), attentionRef(q, k, v, c, 0.125, (_b, _h, i, j) => (j <= c.S - c.L + i ? 0 : -Infinity)), ...tol(c), `parts causal, D ${D}`);
      }
    });
  });

  test("a query that sees no key gets zeros; the others in its batch are unaffected", () => {
    mx.tidy(() => {
      const c = { B: 2, Hq: 2, Hkv: 1, L: 1, S: 10, D: 64 };
      const { q, k, v, Q, K, V } = inputs(c, 31);
      const mask = mx.array(Uint8Array.from({ length: 20 }, (_, n) => (n < 10 ? 0 : 1)), [2, 1, 1, 10], Dtype.bool);
      const got = values(mx.scaledDotProductAttention(Q, K, V, 0.125, mask));
      const want = attentionRef(q, k, v, c, 0.125, (b) => (b === 0 ? -Infinity : 0));
      expect(got.slice(0, 2 * 64).every((x) => x === 0)).toBe(true);
      expectClose(got, want, ...tol(c), "empty row");
    });
  });

  test("inputs the kernel does not take (float16, head size 80) give MLX's own result", () => {
    mx.tidy(() => {
      const c = { Hq: 4, Hkv: 2, L: 3, S: 20, D: 80 };
      const { Q, K, V } = inputs(c, 41);
      expect(values(mx.scaledDotProductAttention(Q, K, V, 0.1, "causal"))).toEqual(values(mx.mlxScaledDotProductAttention(Q, K, V, 0.1, "causal")));
      const [Qh, Kh, Vh] = [Q, K, V].map((a) => mx.astype(mx.slice(a, [0, 0, 0, 0], [1, a.shape[1], a.shape[2], 64]), Dtype.float16));
      expect(values(mx.scaledDotProductAttention(Qh, Kh, Vh, 0.1, "causal"))).toEqual(values(mx.mlxScaledDotProductAttention(Qh, Kh, Vh, 0.1, "causal")));
    });
  });
});
