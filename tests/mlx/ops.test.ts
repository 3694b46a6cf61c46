// Every exposed MLX op against values computed independently in plain TypeScript.
import { describe, expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";
import { Dtype, type MxArray } from "../../shared/mlx/index.ts";
import { attentionRef, expectClose, matmulRef, seeded } from "../helpers/numeric.ts";

const values = (a: MxArray) => Array.from(a.toFloat32());
// The elements of a.data() as stored; HostArray mixes number and bigint arrays.
const elements = (a: MxArray) => Array.from<number | bigint>(a.data());
const f32 = (data: ArrayLike<number>, shape: number[]) => mx.array(Float32Array.from(data), shape);

describe("arrays", () => {
  test("shape, dtype, size, item and host round trip", () => {
    mx.tidy(() => {
      const a = mx.array(new Int32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
      expect(a.shape).toEqual([2, 3]);
      expect(a.ndim).toBe(2);
      expect(a.dtype).toBe(Dtype.int32);
      expect(a.size).toBe(6);
      expect(a.nbytes).toBe(24);
      expect(elements(a)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(mx.scalar(2.5).item()).toBe(2.5);
      expect(mx.array([7], [], Dtype.int32).shape).toEqual([]);
      expect(() => mx.array([1, 2, 3], [2, 2])).toThrow(RangeError);
    });
  });

  test("data() is a copy: changing it leaves the array as it was", () => {
    mx.tidy(() => {
      const a = mx.multiply(mx.arange(0, 8, 1, Dtype.float32), 3);
      const copy = a.data() as Float32Array;
      expect(Array.from(copy)).toEqual([0, 3, 6, 9, 12, 15, 18, 21]);
      copy[0] = 99;
      expect(elements(a)).toEqual([0, 3, 6, 9, 12, 15, 18, 21]);
      expect(elements(mx.zeros([0]))).toEqual([]);
    });
  });

  test("a strided view must be made contiguous before its data is read", () => {
    mx.tidy(() => {
      const t = mx.transpose(mx.array([1, 2, 3, 4, 5, 6], [2, 3]));
      mx.evaluate(t);
      expect(() => t.data()).toThrow(mx.MlxError);
      expect(elements(mx.contiguous(t))).toEqual([1, 4, 2, 5, 3, 6]);
    });
  });

  test("arraysFromData: many arrays of one dtype and rank, each a copy of its own data", () => {
    const parts = [Float32Array.from(seeded(2 * 3 * 5 * 4, 1)), Float32Array.from(seeded(2 * 3 * 1 * 4, 2)), new Float32Array(0)];
    const shapes = [[2, 3, 5, 4], [2, 3, 1, 4], [2, 3, 0, 4]];
    const arrays = mx.arraysFromData(parts, shapes, Dtype.float32);
    try {
      arrays.forEach((a, i) => {
        expect(a.shape).toEqual(shapes[i]);
        expect(Array.from(a.toFloat32())).toEqual(Array.from(parts[i]));
      });
      parts[0].fill(7); // copies: the arrays keep their values
      expect(arrays[0].toFloat32()[0]).not.toBe(7);
      const halves = mx.arraysFromData([Uint16Array.of(0x3c00, 0x4000)], [[2]], Dtype.float16);
      mx.tidy(() => expect(Array.from(mx.astype(halves[0], Dtype.float32).toFloat32())).toEqual([1, 2]));
      mx.dispose(halves);
      expect(() => mx.arraysFromData([new Float32Array(3)], [[2, 2]], Dtype.float32)).toThrow(/does not fit/);
      expect(() => mx.arraysFromData([new Float32Array(4), new Float32Array(4)], [[4], [2, 2]], Dtype.float32)).toThrow(/one rank/);
    } finally {
      mx.dispose(arrays);
    }
  });

  test("zeros, full, arange, astype, 16-bit floats", () => {
    mx.tidy(() => {
      expect(values(mx.zeros([2, 2]))).toEqual([0, 0, 0, 0]);
      expect(values(mx.full([3], 1.5))).toEqual([1.5, 1.5, 1.5]);
      expect(elements(mx.arange(2, 11, 3))).toEqual([2, 5, 8]);
      const h = mx.astype(mx.array([0.5, -2, 65504]), Dtype.float16);
      expect(h.dtype).toBe(Dtype.float16);
      expect(elements(h)).toEqual([0x3800, 0xc000, 0x7bff]);
      expect(values(mx.astype(mx.array([1.7, -1.7]), Dtype.int32))).toEqual([1, -1]);
    });
  });
});

describe("elementwise", () => {
  const x = seeded(12, 3, 0.1, 2);
  const y = seeded(12, 4, 0.1, 2);
  const cases: [string, (a: MxArray, b: MxArray) => MxArray, (a: number, b: number) => number][] = [
    ["add", mx.add, (a, b) => a + b],
    ["subtract", mx.subtract, (a, b) => a - b],
    ["multiply", mx.multiply, (a, b) => a * b],
    ["divide", mx.divide, (a, b) => a / b],
    ["power", mx.power, (a, b) => a ** b],
    ["maximum", mx.maximum, Math.max],
    ["minimum", mx.minimum, Math.min],
    ["greater", mx.greater, (a, b) => Number(a > b)],
    ["less_equal", mx.lessEqual, (a, b) => Number(a <= b)],
    ["equal", mx.equal, (a, b) => Number(a === b)],
  ];
  for (const [name, op, ref] of cases) {
    test(`${name} with broadcasting`, () => {
      mx.tidy(() => {
        // (3, 4) op (1, 4): row j of b broadcasts over every row of a.
        const got = values(op(f32(x, [3, 4]), f32(y.subarray(0, 4), [1, 4])));
        const want = Array.from(x, (v, i) => ref(v, y[i % 4]));
        expectClose(got, want, 1e-6, 1e-5, name);
      });
    });
  }

  const unaries: [string, (a: MxArray) => MxArray, (v: number) => number][] = [
    ["exp", mx.exp, Math.exp],
    ["log", mx.log, Math.log],
    ["log1p", mx.log1p, Math.log1p],
    ["sqrt", mx.sqrt, Math.sqrt],
    ["rsqrt", mx.rsqrt, (v) => 1 / Math.sqrt(v)],
    ["square", mx.square, (v) => v * v],
    ["reciprocal", mx.reciprocal, (v) => 1 / v],
    ["tanh", mx.tanh, Math.tanh],
    ["sigmoid", mx.sigmoid, (v) => 1 / (1 + Math.exp(-v))],
    ["sin", mx.sin, Math.sin],
    ["cos", mx.cos, Math.cos],
    ["negative", mx.negative, (v) => -v],
    ["abs", (a) => mx.abs(mx.negative(a)), Math.abs],
    ["floor", mx.floor, Math.floor],
    ["erf", mx.erf, erfRef],
  ];
  for (const [name, op, ref] of unaries) {
    test(name, () => {
      mx.tidy(() => expectClose(values(op(f32(x, [12]))), Array.from(x, ref), 2e-6, 2e-6, name));
    });
  }

  test("numbers as scalars take the array's dtype", () => {
    mx.tidy(() => {
      const i = mx.array(new Int32Array([1, 2, 3]));
      const r = mx.add(i, 2);
      expect(r.dtype).toBe(Dtype.int32);
      expect(elements(r)).toEqual([3, 4, 5]);
      expect(mx.multiply(i, 0.5).dtype).toBe(Dtype.float32);
      expect(values(mx.subtract(10, i))).toEqual([9, 8, 7]);
    });
  });

  test("where", () => {
    mx.tidy(() => {
      const c = mx.greater(f32([1, -1, 2, -2], [4]), 0);
      expect(values(mx.where(c, f32([10, 20, 30, 40], [4]), -1))).toEqual([10, -1, 30, -1]);
    });
  });
});

describe("matmul and reductions", () => {
  test("matmul against a naive product", () => {
    mx.tidy(() => {
      const a = seeded(5 * 7, 11);
      const b = seeded(7 * 3, 12);
      expectClose(values(mx.matmul(f32(a, [5, 7]), f32(b, [7, 3]))), matmulRef(a, b, 5, 7, 3), 1e-5, 1e-5, "matmul");
    });
  });

  test("batched matmul broadcasts the batch axis", () => {
    mx.tidy(() => {
      const a = seeded(2 * 3 * 4, 13);
      const b = seeded(4 * 2, 14);
      const got = values(mx.matmul(f32(a, [2, 3, 4]), f32(b, [4, 2])));
      const want = [...matmulRef(a.subarray(0, 12), b, 3, 4, 2), ...matmulRef(a.subarray(12), b, 3, 4, 2)];
      expectClose(got, want, 1e-5, 1e-5, "batched");
    });
  });

  test("sum, mean, max, min, prod, logsumexp over axes", () => {
    mx.tidy(() => {
      const x = seeded(6, 21);
      const a = f32(x, [2, 3]);
      const rows = [Array.from(x.subarray(0, 3)), Array.from(x.subarray(3))];
      expectClose(values(mx.sum(a, 1)), rows.map((r) => r[0] + r[1] + r[2]), 1e-6);
      expectClose(values(mx.mean(a, 1)), rows.map((r) => (r[0] + r[1] + r[2]) / 3), 1e-6);
      expectClose(values(mx.max(a, 1)), rows.map((r) => Math.max(...r)), 0);
      expectClose(values(mx.min(a, 0)), [0, 1, 2].map((j) => Math.min(x[j], x[j + 3])), 0);
      expectClose(values(mx.prod(a, 1)), rows.map((r) => r[0] * r[1] * r[2]), 1e-6);
      expectClose(values(mx.logsumexp(a, 1)), rows.map((r) => Math.log(r.reduce((s, v) => s + Math.exp(v), 0))), 1e-6);
      expect(mx.sum(a, 1, true).shape).toEqual([2, 1]);
      expectClose(values(mx.sum(a)), [x.reduce((s, v) => s + v, 0)], 1e-5);
    });
  });

  test("softmax, argmax, argmin, cumsum", () => {
    mx.tidy(() => {
      const x = seeded(8, 31, -3, 3);
      const a = f32(x, [2, 4]);
      const want: number[] = [];
      for (const r of [x.subarray(0, 4), x.subarray(4)]) {
        const m = Math.max(...r);
        const z = Array.from(r, (v) => Math.exp(v - m));
        const s = z.reduce((p, v) => p + v, 0);
        want.push(...z.map((v) => v / s));
      }
      expectClose(values(mx.softmax(a, -1)), want, 1e-6);
      const argmaxWant = [0, 1].map((r) => { const row = Array.from(x.subarray(r * 4, r * 4 + 4)); return row.indexOf(Math.max(...row)); });
      expect(elements(mx.argmax(a, -1))).toEqual(argmaxWant);
      const argminWant = [0, 1].map((r) => { const row = Array.from(x.subarray(r * 4, r * 4 + 4)); return row.indexOf(Math.min(...row)); });
      expect(elements(mx.argmin(a, -1))).toEqual(argminWant);
      const cs: number[] = [];
      for (let r = 0; r < 2; r++) { let s = 0; for (let j = 0; j < 4; j++) { s += x[r * 4 + j]; cs.push(s); } }
      expectClose(values(mx.cumsum(a, -1)), cs, 1e-6);
      const csRevExcl: number[] = [];
      for (let r = 0; r < 2; r++) for (let j = 0; j < 4; j++) { let s = 0; for (let p = j + 1; p < 4; p++) s += x[r * 4 + p]; csRevExcl.push(s); }
      expectClose(values(mx.cumsum(a, -1, true, false)), csRevExcl, 1e-6);
    });
  });

  test("sort, argsort, argpartition, topk", () => {
    mx.tidy(() => {
      const x = seeded(10, 41);
      const a = f32(x, [10]);
      const sorted = Array.from(x).sort((p, q) => p - q);
      expect(values(mx.sort(a))).toEqual(sorted);
      const order = Array.from(mx.argsort(a).data(), Number);
      expect(order.map((i) => x[i])).toEqual(sorted);
      // argpartition: the kth element is in place, everything before it is not larger.
      const k = 3;
      const part = Array.from(mx.argpartition(a, k).data(), Number).map((i) => x[i]);
      expect(part[k]).toBe(sorted[k]);
      for (let i = 0; i < k; i++) expect(part[i]).toBeLessThanOrEqual(part[k]);
      for (let i = k + 1; i < 10; i++) expect(part[i]).toBeGreaterThanOrEqual(part[k]);
      expect(values(mx.topk(a, 3)).sort((p, q) => p - q)).toEqual(sorted.slice(-3));
    });
  });
});

describe("shapes and indexing", () => {
  const x = Array.from({ length: 24 }, (_, i) => i);

  test("reshape, transpose, squeeze, expandDims, broadcastTo", () => {
    mx.tidy(() => {
      const a = f32(x, [2, 3, 4]);
      expect(mx.reshape(a, [6, 4]).shape).toEqual([6, 4]);
      const t = mx.transpose(a, [2, 0, 1]);
      expect(t.shape).toEqual([4, 2, 3]);
      const want: number[] = [];
      for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) want.push(x[i * 12 + j * 4 + k]);
      expect(values(mx.contiguous(t))).toEqual(want);
      expect(mx.expandDims(a, [0, 2]).shape).toEqual([1, 2, 1, 3, 4]);
      expect(mx.squeeze(mx.expandDims(a, 1), 1).shape).toEqual([2, 3, 4]);
      expect(values(mx.broadcastTo(f32([1, 2], [2, 1]), [2, 3]))).toEqual([1, 1, 1, 2, 2, 2]);
    });
  });

  test("slice and sliceUpdate", () => {
    mx.tidy(() => {
      const a = f32(x, [4, 6]);
      const s = mx.slice(a, [1, 0], [3, 6], [1, 2]);
      expect(values(s)).toEqual([6, 8, 10, 12, 14, 16]);
      const u = mx.sliceUpdate(mx.zeros([3, 3]), f32([1, 2, 3, 4], [2, 2]), [1, 1], [3, 3]);
      expect(values(u)).toEqual([0, 0, 0, 0, 1, 2, 0, 3, 4]);
    });
  });

  test("concatenate, stack, take, takeAlongAxis, putAlongAxis, tril, triu", () => {
    mx.tidy(() => {
      const a = f32([1, 2, 3, 4], [2, 2]);
      const b = f32([5, 6], [1, 2]);
      expect(values(mx.concatenate([a, b], 0))).toEqual([1, 2, 3, 4, 5, 6]);
      expect(mx.stack([a, a], 1).shape).toEqual([2, 2, 2]);
      const table = f32(x.slice(0, 12), [4, 3]);
      const ids = mx.array(new Int32Array([3, 0, 3]));
      expect(values(mx.take(table, ids, 0))).toEqual([9, 10, 11, 0, 1, 2, 9, 10, 11]);
      const idx = mx.array(new Int32Array([2, 0]), [2, 1]);
      expect(values(mx.takeAlongAxis(f32([1, 2, 3, 4, 5, 6], [2, 3]), idx, 1))).toEqual([3, 4]);
      const put = mx.putAlongAxis(mx.zeros([2, 3]), idx, f32([7, 8], [2, 1]), 1);
      expect(values(put)).toEqual([0, 0, 7, 8, 0, 0]);
      const ones = mx.full([3, 3], 1);
      expect(values(mx.tril(ones))).toEqual([1, 0, 0, 1, 1, 0, 1, 1, 1]);
      expect(values(mx.triu(ones, 1))).toEqual([0, 1, 1, 0, 0, 1, 0, 0, 0]);
    });
  });
});

describe("fused ops", () => {
  test("rms_norm and layer_norm", () => {
    mx.tidy(() => {
      const x = seeded(2 * 8, 51, -2, 2);
      const w = seeded(8, 52, 0.5, 1.5);
      const b = seeded(8, 53);
      const eps = 1e-5;
      const rms: number[] = [];
      const ln: number[] = [];
      for (let r = 0; r < 2; r++) {
        const row = Array.from(x.subarray(r * 8, r * 8 + 8));
        const ms = row.reduce((s, v) => s + v * v, 0) / 8;
        rms.push(...row.map((v, i) => (v / Math.sqrt(ms + eps)) * w[i]));
        const mean = row.reduce((s, v) => s + v, 0) / 8;
        const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / 8;
        ln.push(...row.map((v, i) => ((v - mean) / Math.sqrt(variance + eps)) * w[i] + b[i]));
      }
      expectClose(values(mx.rmsNorm(f32(x, [2, 8]), f32(w, [8]), eps)), rms, 1e-5, 1e-5, "rms_norm");
      expectClose(values(mx.layerNorm(f32(x, [2, 8]), f32(w, [8]), f32(b, [8]), eps)), ln, 1e-5, 1e-5, "layer_norm");
    });
  });

  // x: (1, 1, L, D) rotated at positions offset..offset+L-1 with inverse frequencies invFreq.
  function ropeRef(x: Float32Array, L: number, D: number, dims: number, traditional: boolean, invFreq: number[], scale: number, offset: number): number[] {
    const out = Array.from(x);
    for (let p = 0; p < L; p++) {
      const pos = (offset + p) * scale;
      for (let i = 0; i < dims / 2; i++) {
        const [a, b] = traditional ? [2 * i, 2 * i + 1] : [i, i + dims / 2];
        const th = pos * invFreq[i];
        const xa = x[p * D + a];
        const xb = x[p * D + b];
        out[p * D + a] = xa * Math.cos(th) - xb * Math.sin(th);
        out[p * D + b] = xa * Math.sin(th) + xb * Math.cos(th);
      }
    }
    return out;
  }

  for (const traditional of [false, true]) {
    test(`rope (${traditional ? "interleaved" : "halves"}), partial dims, offset, scale`, () => {
      mx.tidy(() => {
        const L = 5, D = 8, dims = 6, base = 10000, scale = 0.5, offset = 7;
        const x = seeded(L * D, 61);
        const inv = Array.from({ length: dims / 2 }, (_, i) => base ** ((-2 * i) / dims));
        const got = values(mx.rope(f32(x, [1, 1, L, D]), { dims, traditional, base, scale }, offset));
        expectClose(got, ropeRef(x, L, D, dims, traditional, inv, scale, offset), 1e-5, 1e-5, "rope");
      });
    });
  }

  test("rope with custom frequencies and per-sequence offsets", () => {
    mx.tidy(() => {
      const L = 1, D = 4;
      const x = seeded(2 * L * D, 62);
      // MLX takes `freqs` as periods: theta = position / freqs[i].
      const periods = [1, 37.5];
      const freqs = f32(periods, [2]);
      const offsets = mx.array(new Int32Array([3, 11]));
      const got = values(mx.rope(f32(x, [2, 1, L, D]), { dims: D, traditional: false, base: 0, scale: 1, freqs }, offsets));
      const inv = periods.map((p) => 1 / p);
      const want = [...ropeRef(x.subarray(0, 4), L, D, D, false, inv, 1, 3), ...ropeRef(x.subarray(4), L, D, D, false, inv, 1, 11)];
      expectClose(got, want, 1e-5, 1e-5, "rope freqs");
    });
  });

  // The layout the models pass: heads transposed out of (B, L, H, D), so the rows are strided;
  // positions of a long context, different per sequence (a batched decode step).
  test("rope over strided heads at per-sequence positions up to 4K; rms_norm over strided rows without weight", () => {
    mx.tidy(() => {
      const B = 2, L = 3, H = 3, D = 64, base = 100000;
      const blhd = seeded(B * L * H * D, 63);
      const offsets = [5, 4093];
      const x = mx.transpose(f32(blhd, [B, L, H, D]), [0, 2, 1, 3]);
      const got = values(mx.rope(x, { dims: D, traditional: false, base, scale: 1 }, mx.array(new Int32Array(offsets))));
      const inv = Array.from({ length: D / 2 }, (_, i) => base ** ((-2 * i) / D));
      const want: number[] = [];
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++) {
          const rows = new Float32Array(L * D);
          for (let l = 0; l < L; l++) rows.set(blhd.subarray(((b * L + l) * H + h) * D, ((b * L + l) * H + h + 1) * D), l * D);
          want.push(...ropeRef(rows, L, D, D, false, inv, 1, offsets[b]));
        }
      expectClose(got, want, 2e-5, 1e-5, "rope strided");
      const eps = 1e-6;
      const rows = mx.transpose(f32(blhd.subarray(0, 4 * D), [D, 4]), [1, 0]); // (4, D), columns strided
      const rms: number[] = [];
      for (let r = 0; r < 4; r++) {
        const row = Array.from({ length: D }, (_, j) => blhd[j * 4 + r]);
        const ms = row.reduce((a, v) => a + v * v, 0) / D;
        rms.push(...row.map((v) => v / Math.sqrt(ms + eps)));
      }
      expectClose(values(mx.rmsNorm(rows, null, eps)), rms, 1e-5, 1e-5, "rms_norm strided");
    });
  });

  const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const acts = { silu: (x: number) => x / (1 + Math.exp(-x)), gelu_tanh: geluTanh };
  for (const act of ["silu", "gelu_tanh"] as const) {
    test(`gated activation ${act}(gate) * up: over the float32 range, any length, strided, threaded`, () => {
      mx.tidy(() => {
        const ref = (g: number, u: number) => acts[act](g) * u;
        // Extremes first (exp would overflow, the activation saturates), then seeded values;
        // 40,005 elements: several work items of the pool and a tail shorter than a vector.
        const n = 40_005;
        const g = Float32Array.from(seeded(n, 11), (v) => v * 12);
        const u = Float32Array.from(seeded(n, 12));
        g.set([0, -0, 1e-30, -1e-30, 88, -88, 100, -100, 3.4e38, -3.4e38, 1, -1, 3e12, -3e12]);
        const want = Array.from(g, (gi, i) => ref(gi, u[i]));
        expectClose(values(mx.gatedActivation(f32(g, [5, n / 5]), f32(u, [5, n / 5]), act)), want, 1e-6, 2e-6, act);
        // A strided gate (a transposed view) is read through a copy.
        const gt = mx.transpose(f32(g.subarray(0, 64 * 3), [64, 3]), [1, 0]);
        const ut = mx.transpose(f32(u.subarray(0, 64 * 3), [64, 3]), [1, 0]);
        const at = (k: number) => (k % 64) * 3 + Math.floor(k / 64);
        const strided = Array.from({ length: 3 * 64 }, (_, k) => ref(g[at(k)], u[at(k)]));
        expectClose(values(mx.gatedActivation(gt, ut, act)), strided, 1e-6, 2e-6, `${act} strided`);
        // Other dtypes are MLX's ops.
        const h = (a: Float32Array) => mx.astype(f32(a.subarray(14, 40), [26]), Dtype.float16);
        const half = mx.gatedActivation(h(g), h(u), act);
        expect(half.dtype).toBe(Dtype.float16);
        expectClose(values(mx.astype(half, Dtype.float32)), want.slice(14, 40), 2e-2, 2e-2, `${act} float16`);
      });
    });
  }

  // Head size 8 is not one the project's CPU kernel takes: this is MLX's own attention.
  test("scaled_dot_product_attention: causal, additive mask, grouped-query heads", () => {
    mx.tidy(() => {
      const Hq = 4, Hkv = 2, L = 3, S = 5, D = 8, scale = 1 / Math.sqrt(8);
      const dims = { Hq, Hkv, L, S, D };
      const q = seeded(Hq * L * D, 71), k = seeded(Hkv * S * D, 72), v = seeded(Hkv * S * D, 73);
      const Q = f32(q, [1, Hq, L, D]), K = f32(k, [1, Hkv, S, D]), V = f32(v, [1, Hkv, S, D]);
      // Causal with L < S aligns the queries to the last L keys (query i sees keys <= i + S - L).
      const causal = attentionRef(q, k, v, dims, scale, (_b, _h, i, j) => (j <= i + S - L ? 0 : -Infinity));
      expectClose(values(mx.scaledDotProductAttention(Q, K, V, scale, "causal")), causal, 1e-5, 1e-5, "causal");
      const add = seeded(L * S, 74, -2, 0);
      const masked = attentionRef(q, k, v, dims, scale, (_b, _h, i, j) => add[i * S + j]);
      expectClose(values(mx.scaledDotProductAttention(Q, K, V, scale, f32(add, [L, S]))), masked, 1e-5, 1e-5, "additive");
      expectClose(values(mx.scaledDotProductAttention(Q, K, V, scale, null)), attentionRef(q, k, v, dims, scale, () => 0), 1e-5, 1e-5, "none");
    });
  });
});

describe("quantized path", () => {
  // MLX affine format: each uint32 packs 32/bits values, lowest bits first; w = scale * q + bias per group.
  function dequantRef(packed: Uint32Array, scales: number[], biases: number[], rows: number, cols: number, group: number, bits: number): Float64Array {
    const per = 32 / bits;
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) {
        const word = packed[r * (cols / per) + Math.floor(c / per)];
        const q = (word >>> ((c % per) * bits)) & ((1 << bits) - 1);
        const g = r * (cols / group) + Math.floor(c / group);
        out[r * cols + c] = scales[g] * q + biases[g];
      }
    return out;
  }

  for (const bits of [4, 8]) {
    test(`quantize / dequantize / quantized_matmul at ${bits} bits`, () => {
      mx.tidy(() => {
        const rows = 8, cols = 128, group = 64;
        const w = seeded(rows * cols, 81 + bits);
        const q = mx.quantize(f32(w, [rows, cols]), group, bits);
        expect(q.w.dtype).toBe(Dtype.uint32);
        expect(q.w.shape).toEqual([rows, (cols * bits) / 32]);
        const scales = values(q.scales), biases = values(q.biases);
        const ref = dequantRef(q.w.data() as Uint32Array, scales, biases, rows, cols, group, bits);
        expectClose(values(mx.dequantize(q)), ref, 1e-6, 1e-6, "dequantize");
        // MLX snaps each group's scale so an end of its range is exact: the error stays within one step.
        const step = Math.max(...scales.map(Math.abs));
        expectClose(Array.from(ref), w, step + 1e-6, 0, "reconstruction");
        const x = seeded(3 * cols, 91);
        const wT = new Float64Array(cols * rows);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) wT[c * rows + r] = ref[r * cols + c];
        expectClose(values(mx.quantizedMatmul(f32(x, [3, cols]), q)), matmulRef(x, wT, 3, cols, rows), 1e-4, 1e-4, "qmm");
      });
    });
  }
});

describe("random", () => {
  test("keys are deterministic; categorical follows the logits", () => {
    mx.tidy(() => {
      const a = values(mx.uniform([6], mx.randomKey(7)));
      const b = values(mx.uniform([6], mx.randomKey(7)));
      const c = values(mx.uniform([6], mx.randomKey(8)));
      expect(a).toEqual(b);
      expect(a).not.toEqual(c);
      for (const v of a) expect(v >= 0 && v < 1).toBe(true);
      expect(mx.randomSplit(mx.randomKey(1), 3).shape).toEqual([3, 2]);
      const logits = f32([-1e9, -1e9, 0, -1e9, 0, -1e9, -1e9, -1e9], [2, 4]);
      expect(elements(mx.categorical(logits, mx.randomKey(3)))).toEqual([2, 0]);
      // Two equally likely outcomes over many seeds: both appear, nothing else does.
      const seen = new Set<number>();
      for (let s = 0; s < 40; s++) seen.add(mx.categorical(f32([0, -1e9, 0], [3]), mx.randomKey(s)).item());
      expect([...seen].sort()).toEqual([0, 2]);
    });
  });
});

describe("errors", () => {
  test("a shape mismatch throws MLX's message and the next op works", () => {
    mx.tidy(() => {
      let err: unknown;
      try {
        mx.matmul(f32([1, 2, 3], [1, 3]), f32([1, 2], [2, 1]));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(mx.MlxError);
      expect((err as Error).message).toContain("[matmul]");
      expect(values(mx.add(f32([1], [1]), 1))).toEqual([2]);
      expect(() => mx.reshape(f32([1, 2, 3], [3]), [2, 2])).toThrow(mx.MlxError);
    });
  });

  test("use after free throws; free is idempotent", () => {
    const a = mx.array([1, 2]);
    a.free();
    a.free();
    expect(a.freed).toBe(true);
    expect(() => a.shape).toThrow("used after free");
  });
});

// Abramowitz-Stegun 7.1.26 is too coarse; a Taylor series is exact enough on [0, 2].
function erfRef(x: number): number {
  let term = x, sum = x;
  for (let n = 1; n < 60; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
