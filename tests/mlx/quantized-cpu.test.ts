// The project's CPU kernel for quantized matmuls (ffi/qmm_cpu.cpp; from 16 rows on AMX tiles,
// ffi/qmm_amx.cpp, where the CPU has them) against MLX's quantized_matmul and against a
// plain-TypeScript product over weights unpacked independently.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as mx from "../../shared/mlx/index.ts";
import { Dtype, type QuantizedWeight } from "../../shared/mlx/index.ts";
import { expectClose, seeded } from "../helpers/numeric.ts";

const f32 = (data: ArrayLike<number>, shape: number[]) => mx.array(Float32Array.from(data), shape);

/** MLX affine format, unpacked here: each uint32 packs 32/bits values, lowest bits first; w = scale * q + bias per group. */
function dequantRef(q: QuantizedWeight): { w: Float32Array; rows: number; cols: number } {
  const packed = q.w.data() as Uint32Array;
  const scales = q.scales.toFloat32(), biases = q.biases.toFloat32();
  const [rows, words] = q.w.shape;
  const per = 32 / q.bits, cols = words * per, groups = cols / q.groupSize, mask = (1 << q.bits) - 1;
  const w = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const v = (packed[r * words + Math.floor(c / per)] >>> ((c % per) * q.bits)) & mask;
      const g = r * groups + Math.floor(c / q.groupSize);
      w[r * cols + c] = scales[g] * v + biases[g];
    }
  return { w, rows, cols };
}

/** x (m, k) @ w.T with w (n, k), accumulated in float64. */
function linearRef(x: Float32Array, w: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
      out[i * n + j] = s;
    }
  return out;
}

function quantized(n: number, k: number, group: number, bits: number, seed: number): QuantizedWeight {
  const q = mx.tidy(() => mx.quantize(f32(seeded(n * k, seed, -0.08, 0.08), [n, k]), group, bits));
  mx.evaluate(q.w, q.scales, q.biases);
  return q;
}

const free = (q: QuantizedWeight) => mx.dispose([q.w, q.scales, q.biases]);
const ROWS = [1, 3, 8, 17, 48, 136];
// Rows from which the kernel runs on tiles, where the CPU has them (AMX_MIN_ROWS in qmm_cpu.cpp).
const TILE_ROWS = 16;

const cpuFlags = (): string[] =>
  process.platform === "linux" && process.arch === "x64" ? (readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1].split(/\s+/) ?? []) : [];

/** What /proc/cpuinfo says about AMX with bf16 (the tiles need the AVX-512 bf16 conversions too). */
function cpuHasAmx(): boolean {
  return process.env.SEMANTIC_AMX !== "0" && ["amx_tile", "amx_bf16", "avx512_bf16"].every((f) => cpuFlags().includes(f));
}

/** AVX-512 with VNNI (the library is built with -march=native): the int16 panels of ffi/qmm_panels.cpp. */
const cpuHasVnni = (): boolean => ["avx512f", "avx512bw", "avx512_vnni"].every((f) => cpuFlags().includes(f));

describe("quantizedMatmulRows (CPU kernel)", () => {
  test("the kernel takes 2, 4 and 8 bits in groups of 32, 64, 128; not 3 bits", () => {
    for (const bits of [2, 4, 8]) for (const g of [32, 64, 128]) expect(mx.cpuKernelTakes(g, bits)).toBe(true);
    expect(mx.cpuKernelTakes(32, 3)).toBe(false);
    expect(mx.cpuKernelTakes(16, 4)).toBe(false);
    expect(mx.quantizedMatmulThreads()).toBeGreaterThanOrEqual(1);
  });

  test("the tiles take 4 and 8 bits exactly where the CPU has AMX (this CPU: " + (cpuHasAmx() ? "yes" : "no") + ")", () => {
    for (const bits of [4, 8]) for (const g of [32, 64, 128]) expect(mx.cpuTilesTake(g, bits)).toBe(cpuHasAmx());
    expect(mx.cpuTilesTake(32, 2)).toBe(false);
  });

  test("a many-row path (tiles or AVX-512 VNNI panels) takes 4 and 8 bits where the CPU has either, 2 bits with VNNI (this CPU: AVX-512 VNNI " + (cpuHasVnni() ? "yes" : "no") + ")", () => {
    for (const bits of [4, 8]) for (const g of [32, 64, 128]) expect(mx.cpuManyRowsTake(g, bits)).toBe(cpuHasAmx() || cpuHasVnni());
    expect(mx.cpuManyRowsTake(32, 2)).toBe(cpuHasVnni());
    expect(mx.cpuManyRowsTake(16, 4)).toBe(false);
  });

  // SmolLM2-135M's layer shapes: (out, in) of gate/up and of down.
  for (const [n, k] of [[1536, 576], [576, 1536]])
    for (const bits of [4, 8])
      for (const group of [32, 64])
        test(`${n}x${k}, ${bits} bits, group ${group}: rows ${ROWS.join(", ")} match MLX and the reference`, () => {
          const q = quantized(n, k, group, bits, n + k + bits + group);
          try {
            const { w } = dequantRef(q);
            for (const m of ROWS) {
              mx.tidy(() => {
                const xs = seeded(m * k, 100 + m);
                const x = f32(xs, [m, k]);
                const ours = mx.quantizedMatmulRows(x, q).toFloat32();
                expectClose(ours, linearRef(xs, w, m, k, n), 1e-4, 1e-4, `rows ${m} vs reference`);
                expectClose(ours, mx.quantizedMatmul(x, q).toFloat32(), 1e-4, 1e-4, `rows ${m} vs MLX`);
              });
            }
          } finally {
            free(q);
          }
        });

  // The tied lm_head: 49152 x 576, 8 bits as the GGUF stores it (and 4 bits).
  for (const bits of [8, 4])
    test(`lm_head 49152x576, ${bits} bits, group 32: rows ${ROWS.join(", ")} match MLX and the reference`, () => {
      const n = 49152, k = 576;
      const q = quantized(n, k, 32, bits, 7 + bits);
      try {
        const { w } = dequantRef(q);
        for (const m of ROWS) {
          mx.tidy(() => {
            const xs = seeded(m * k, 200 + m);
            const x = f32(xs, [m, k]);
            const ours = mx.quantizedMatmulRows(x, q).toFloat32();
            expectClose(ours, linearRef(xs, w, m, k, n), 1e-4, 1e-4, `rows ${m} vs reference`);
            expectClose(ours, mx.quantizedMatmul(x, q).toFloat32(), 1e-4, 1e-4, `rows ${m} vs MLX`);
          });
        }
      } finally {
        free(q);
      }
    }, 120_000);

  test("outputs and rows that fill no whole tile block: 100 outputs, 16 to 47 rows, 4 and 8 bits, groups 32 to 128", () => {
    for (const bits of [4, 8])
      for (const group of [32, 64, 128]) {
        const n = 100, k = 256;
        const q = quantized(n, k, group, bits, 17 * bits + group);
        try {
          const { w } = dequantRef(q);
          for (const m of [16, 31, 33, 47])
            mx.tidy(() => {
              const xs = seeded(m * k, 300 + m);
              expectClose(mx.quantizedMatmulRows(f32(xs, [m, k]), q).toFloat32(), linearRef(xs, w, m, k, n), 1e-4, 1e-4, `${bits} bits, group ${group}, rows ${m}`);
            });
        } finally {
          free(q);
        }
      }
  });

  test("2 bits and group 128 match MLX, at 5 rows and at 29 (the many-row paths)", () => {
    for (const [bits, group] of [[2, 32], [2, 128], [4, 128], [8, 128]]) {
      const q = quantized(96, 256, group, bits, 3 * bits + group);
      try {
        mx.tidy(() => {
          for (const m of [5, 29]) {
            const x = f32(seeded(m * 256, 9), [m, 256]);
            expectClose(mx.quantizedMatmulRows(x, q).toFloat32(), mx.quantizedMatmul(x, q).toFloat32(), 1e-4, 1e-4, `${bits} bits, group ${group}, rows ${m}`);
          }
        });
      } finally {
        free(q);
      }
    }
  });

  test("each row's result is bit-identical whatever the number of rows on the same path (batched = alone)", () => {
    const n = 1536, k = 576;
    const q = quantized(n, k, 32, 4, 5);
    try {
      mx.tidy(() => {
        const xs = seeded(70 * k, 77);
        // Below TILE_ROWS the row kernel; from it the tiles or the AVX-512 VNNI panels where the CPU has them (else the row kernel again).
        for (const [most, fewer] of [[TILE_ROWS - 1, [1, 8]], [70, [TILE_ROWS, 17, 40]]] as const) {
          const all = mx.quantizedMatmulRows(f32(xs.subarray(0, most * k), [most, k]), q).toFloat32();
          for (const m of fewer) {
            const some = mx.quantizedMatmulRows(f32(xs.subarray(0, m * k), [m, k]), q).toFloat32();
            expect(Array.from(some)).toEqual(Array.from(all.subarray(0, m * n)));
          }
        }
      });
    } finally {
      free(q);
    }
  });

  // The int16 panels (ffi/qmm_panels.cpp) compute x as quantized times the dequantized weights:
  // each x off by at most half a step of its group of 32's scale (largest |x| / 32767), so every
  // output lies within sum over groups of largest |x| / 65534 * sum |w| of the group, plus float32
  // rounding of the scaled sums. Outliers (every 97th value x50, as LLM activations have a few
  // large channels) coarsen only their own groups.
  test.if(cpuHasVnni() && !cpuHasAmx())("int16 panels (this CPU): every output within the bound of x's int16 quantization, with outliers", () => {
    const n = 576, k = 1536, m = 40;
    const q = quantized(n, k, 32, 4, 21);
    try {
      const { w } = dequantRef(q);
      const biases = q.biases.toFloat32();
      const xs = seeded(m * k, 22);
      for (let i = 0; i < xs.length; i += 97) xs[i] *= 50;
      const got = mx.tidy(() => mx.quantizedMatmulRows(f32(xs, [m, k]), q).toFloat32());
      const ref = linearRef(xs, w, m, k, n);
      let worst = 0; // largest error / bound
      for (let r = 0; r < m; r++)
        for (let c = 0; c < n; c++) {
          let bound = 0, terms = 0;
          for (let g = 0; g < k; g += 32) {
            let top = 0, wsum = 0;
            const b = Math.abs(biases[c * (k / 32) + g / 32]);
            for (let i = g; i < g + 32; i++) {
              const x = Math.abs(xs[r * k + i]), wi = Math.abs(w[c * k + i]);
              top = Math.max(top, x);
              wsum += wi;
              terms += x * (wi + 2 * b); // |s q| <= |w| + |b|, and the bias term
            }
            bound += (top / 65534) * wsum * 1.01; // 1%: float32 rounding of x / scale
          }
          bound += 1e-5 * terms;
          worst = Math.max(worst, Math.abs(got[r * n + c] - ref[r * n + c]) / bound);
        }
      expect(worst).toBeLessThanOrEqual(1);
      // Not float32 arithmetic in disguise: the quantization error is a visible share of the bound.
      expect(worst).toBeGreaterThan(0.02);
    } finally {
      free(q);
    }
  });

  test("lazy inside a graph: unevaluated and strided inputs, batch dimensions, ops after it", () => {
    const n = 192, k = 576;
    const q = quantized(n, k, 32, 4, 11);
    try {
      mx.tidy(() => {
        const xs = seeded(2 * 3 * k, 12);
        const { w } = dequantRef(q);
        const ref = linearRef(xs, w, 6, k, n);
        // x computed in the same graph (not evaluated yet), (2, 3, K), the result used by more ops.
        const x = mx.multiply(mx.add(f32(xs, [2, 3, k]), 1), 1);
        const y = mx.subtract(mx.quantizedMatmulRows(mx.subtract(x, 1), q), 0);
        expect(y.shape).toEqual([2, 3, n]);
        expectClose(y.toFloat32(), ref, 1e-4, 1e-4, "in a graph");
        // A transposed (strided) view of x.
        const xt = mx.transpose(f32(xs, [k, 6]));
        const xtRef = new Float32Array(6 * k);
        for (let i = 0; i < 6; i++) for (let p = 0; p < k; p++) xtRef[i * k + p] = xs[p * 6 + i];
        expectClose(mx.quantizedMatmulRows(xt, q).toFloat32(), linearRef(xtRef, w, 6, k, n), 1e-4, 1e-4, "strided x");
      });
    } finally {
      free(q);
    }
  });

  test("quantizedGatedMatmul equals gatedActivation over the two products, bit for bit, and the reference", () => {
    // 200 outputs: 12 panels of 16 and a partial one; rows below the tiles, at them, unaligned.
    const n = 200, k = 256;
    for (const [bits, group] of [[4, 32], [8, 64]]) {
      const gate = quantized(n, k, group, bits, 41 + bits), up = quantized(n, k, group, bits, 43 + bits);
      try {
        const g = dequantRef(gate).w, u = dequantRef(up).w;
        for (const act of ["silu", "gelu_tanh"] as const)
          for (const m of [1, 5, TILE_ROWS, 37, 149])
            mx.tidy(() => {
              const xs = seeded(m * k, 500 + m);
              const x = f32(xs, [m, k]);
              const fused = Array.from(mx.quantizedGatedMatmul(x, gate, up, act).toFloat32());
              expect(fused).toEqual(Array.from(mx.gatedActivation(mx.quantizedMatmulRows(x, gate), mx.quantizedMatmulRows(x, up), act).toFloat32()));
              const gr = linearRef(xs, g, m, k, n), ur = linearRef(xs, u, m, k, n);
              const z = (v: number) => (act === "silu" ? v : 2 * Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3));
              const ref = gr.map((v, i) => (v / (1 + Math.exp(-z(v)))) * ur[i]);
              expectClose(fused, ref, 1e-4, 1e-4, `${bits} bits, ${act}, rows ${m}`);
            });
      } finally {
        free(gate);
        free(up);
      }
    }
  });

  test("float16 inputs (not the kernel's) give MLX's own result", () => {
    const q = quantized(64, 128, 32, 4, 13);
    try {
      mx.tidy(() => {
        const half: QuantizedWeight = { ...q, scales: mx.astype(q.scales, Dtype.float16), biases: mx.astype(q.biases, Dtype.float16) };
        const x = mx.astype(f32(seeded(2 * 128, 14), [2, 128]), Dtype.float16);
        const got = mx.quantizedMatmulRows(x, half);
        expect(got.dtype).toBe(Dtype.float16);
        expect(Array.from(mx.astype(got, Dtype.float32).toFloat32())).toEqual(Array.from(mx.astype(mx.quantizedMatmul(x, half), Dtype.float32).toFloat32()));
      });
    } finally {
      free(q);
    }
  });
});

describe("dequantizeFloat32 (CPU kernel)", () => {
  for (const [bits, group] of [[4, 32], [8, 32], [4, 64], [8, 64], [2, 128]])
    test(`${bits} bits, group ${group}: the reference's values and MLX's dequantize`, () => {
      const q = quantized(300, 256, group, bits, 40 + bits + group);
      try {
        mx.tidy(() => {
          const ours = mx.dequantizeFloat32(q);
          expect(ours.shape).toEqual([300, 256]);
          expect(ours.dtype).toBe(Dtype.float32);
          const got = ours.toFloat32();
          expectClose(got, dequantRef(q).w, 1e-7, 1e-6, "vs reference");
          expectClose(got, mx.dequantize(q, Dtype.float32).toFloat32(), 1e-7, 1e-6, "vs MLX");
        });
      } finally {
        free(q);
      }
    });
});
