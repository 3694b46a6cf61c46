// The batched, left-padded K/V cache on small random arrays: rows keep exactly their own
// tokens through joins, steps, growth and leaves, and attention through its mask equals each
// row's attention alone.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";
import { BatchKVCache } from "../../shared/models/batch-cache.ts";
import { KVCache } from "../../shared/models/cache.ts";

const H = 2;
const Hq = 4;
const D = 8;
let key = 0;
const rand = (shape: number[]) => mx.keep(mx.tidy(() => mx.uniform(shape, mx.randomKey(key++))));

let baseline = 0;
beforeEach(() => (baseline = mx.handleCounts().live));
afterEach(() => expect(mx.handleCounts().live).toBe(baseline));

function values(a: mx.MxArray): number[] {
  return Array.from(a.toFloat32());
}

/** Rows of random K/V (1, H, n, D) for each length. */
function rows(lengths: number[]): [mx.MxArray, mx.MxArray][] {
  return lengths.map((n) => [rand([1, H, n, D]), rand([1, H, n, D])]);
}

describe("BatchKVCache", () => {
  test("rows keep their own tokens through joins (wider rows shift the rest), steps and a leave", () => {
    const lengths = [3, 7, 5];
    const data = rows(lengths);
    const c = new BatchKVCache();
    for (const [k, v] of data) c.add(k, v);
    expect(c.lengths).toEqual(lengths);
    expect(c.end).toBe(7);
    const step = [rand([3, H, 1, D]), rand([3, H, 1, D])];
    mx.tidy(() => void c.updateAndFetch(step[0], step[1]));
    expect(c.lengths).toEqual([4, 8, 6]);
    for (let i = 0; i < 3; i++) {
      const [k, v] = c.extract(i);
      const want = mx.tidy(() => [
        mx.concatenate([data[i][0], mx.slice(step[0], [i, 0, 0, 0], [i + 1, H, 1, D])], 2),
        mx.concatenate([data[i][1], mx.slice(step[1], [i, 0, 0, 0], [i + 1, H, 1, D])], 2),
      ]);
      expect(values(k)).toEqual(values(want[0]));
      expect(values(v)).toEqual(values(want[1]));
      mx.dispose([k, v, want]);
    }
    // The widest row leaves: padding no one needs is dropped.
    const [k0, v0] = c.extract(0);
    c.remove([1]);
    expect(c.lengths).toEqual([4, 6]);
    expect(c.end).toBe(6);
    const [k0after, v0after] = c.extract(0);
    expect(values(k0after)).toEqual(values(k0));
    mx.dispose([k0, v0, k0after, v0after, step, data]);
    c.remove([0, 1]);
    expect(c.rows).toBe(0);
    expect(c.arrays()).toEqual([]);
    c.free();
  });

  test("grows past its capacity without losing tokens", () => {
    const [[k, v]] = rows([BatchKVCache.step - 1]);
    const c = new BatchKVCache();
    c.add(k, v);
    expect(c.capacity).toBe(BatchKVCache.step);
    const steps = [0, 1, 2].map(() => [rand([1, H, 1, D]), rand([1, H, 1, D])]);
    for (const [sk, sv] of steps) mx.tidy(() => void c.updateAndFetch(sk, sv));
    expect(c.capacity).toBe(2 * BatchKVCache.step);
    const [gk, gv] = c.extract(0);
    const want = mx.tidy(() => mx.concatenate([k, ...steps.map((s) => s[0])], 2));
    expect(values(gk)).toEqual(values(want));
    mx.dispose([k, v, steps, gk, gv, want]);
    c.free();
  });

  for (const [L, window] of [[1, null], [2, null], [1, 4], [3, 4]] as const) {
    test(`attention over the padded batch equals each row alone (L=${L}, window=${window})`, () => {
      const lengths = [2, 9, 5, 9];
      const data = rows(lengths);
      const B = lengths.length;
      const c = new BatchKVCache();
      for (const [k, v] of data) c.add(k, v);
      const q = rand([B, Hq, L, D]);
      const nk = rand([B, H, L, D]);
      const nv = rand([B, H, L, D]);
      const batched = mx.keep(mx.tidy(() => {
        const mask = c.makeMask(L, window);
        const [K, V] = c.updateAndFetch(nk, nv);
        return mx.scaledDotProductAttention(q, K, V, D ** -0.5, mask);
      }));
      for (let b = 0; b < B; b++) {
        const row = (a: mx.MxArray) => mx.slice(a, [b, 0, 0, 0], [b + 1, a.shape[1], L, D]);
        const alone = mx.tidy(() => {
          const kv = KVCache.fromSegments([mx.contiguous(data[b][0])], [mx.contiguous(data[b][1])]);
          const mask = kv.makeMask(L, window);
          const [K, V] = kv.updateAndFetch(row(nk), row(nv));
          const o = mx.scaledDotProductAttention(row(q), K, V, D ** -0.5, mask);
          mx.evaluate(o);
          kv.free();
          return o;
        });
        const got = mx.tidy(() => row(batched));
        const a = values(got);
        const e = values(alone);
        // Same math; only the order of summation over padded columns can differ.
        expect(Math.max(...a.map((x, i) => Math.abs(x - e[i])))).toBeLessThan(1e-6);
        mx.dispose([alone, got]);
      }
      mx.dispose([batched, q, nk, nv, data]);
      c.free();
    });
  }
});
