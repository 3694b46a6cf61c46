// Each sampler stage against its published definition (llama.cpp's src/llama-sampling.cpp),
// recomputed in plain TypeScript in reference.ts, on fixed logit vectors: the kept set equals
// the reference's exactly, and distributions agree to float32 precision.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";
import * as st from "../../shared/engine/sampling/stages.ts";
import * as ref from "./reference.ts";

let baseline = 0;
beforeEach(() => (baseline = mx.handleCounts().live));
afterEach(() => expect(mx.handleCounts().live).toBe(baseline));

const SMALL = [2.5, -1, 0.3, 4.1, 3.9, -0.7, 1.2, 0, 2.2, -3, 0.9, 3.1];
const LARGE = ref.logitVector(2000, 7);
const TOL = 2e-5;

/** Runs a stage on a (1, n) row and returns the row as numbers. */
function run(logits: readonly number[], stage: (x: mx.MxArray) => mx.MxArray): number[] {
  return mx.tidy(() => Array.from(stage(mx.array(logits, [1, logits.length])).toFloat32()));
}

const kept = (row: number[]) => row.flatMap((v, i) => (v > -Infinity ? [i] : []));

/** The kept set equals the reference's, and kept logits are unchanged. */
function expectKept(input: readonly number[], row: number[], expected: ref.Candidate[]) {
  expect(kept(row)).toEqual(ref.ids(expected));
  for (const i of kept(row)) expect(row[i]).toBe(Math.fround(input[i]));
}

function expectClose(a: number[], b: number[], tol = TOL) {
  expect(a.length).toBe(b.length);
  const worst = Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  expect(worst).toBeLessThan(tol);
}

describe("truncation stages keep exactly llama.cpp's set", () => {
  for (const [name, v] of [["12 logits", SMALL], ["2000 logits", LARGE]] as const) {
    test(`top-k on ${name}: the k largest, most likely first, with their columns`, () => {
      for (const k of [1, 3, 7, 11]) {
        const [values, cols] = mx.tidy(() => {
          const r = st.topK(mx.array(v, [1, v.length]), k);
          return [Array.from(r.logits.toFloat32()), Array.from(mx.astype(r.indices, mx.Dtype.int32).toFloat32())];
        });
        const expected = ref.topK(ref.candidates(v), k);
        expect(cols).toEqual(expected.map((c) => c.id));
        expect(values).toEqual(expected.map((c) => Math.fround(c.logit)));
      }
    });

    test(`top-p on ${name}: up to the first token whose running sum reaches p`, () => {
      for (const p of [0.05, 0.3, 0.5, 0.9, 0.99]) expectKept(v, run(v, (x) => st.topP(x, p)), ref.topP(ref.candidates(v), p));
      expect(run(v, (x) => st.topP(x, 1))).toEqual(v.map(Math.fround));
    });

    test(`min-p on ${name}: p >= min_p * p_max`, () => {
      for (const p of [0.01, 0.05, 0.2, 0.6, 1]) expectKept(v, run(v, (x) => st.minP(x, p)), ref.minP(ref.candidates(v), p));
    });

    test(`typical-p on ${name}: by |-ln p - H| until the mass exceeds p`, () => {
      for (const p of [0.1, 0.5, 0.9, 0.95]) expectKept(v, run(v, (x) => st.typicalP(x, p)), ref.typical(ref.candidates(v), p));
    });
  }

  test("top-p over an already-sorted row (after top-k) keeps the same set as the general path", () => {
    const sorted = [...LARGE].sort((a, b) => b - a).slice(0, 64);
    for (const p of [0.2, 0.7, 0.95]) expect(run(sorted, (x) => st.topP(x, p, true))).toEqual(run(sorted, (x) => st.topP(x, p)));
  });

  test("stages compose over what earlier stages removed (renormalized over the rest)", () => {
    const afterTopK = ref.topK(ref.candidates(LARGE), 40);
    const expected = ref.typical(ref.minP(ref.topP(afterTopK, 0.9), 0.05), 0.8);
    const row = mx.tidy(() => {
      const { logits } = st.topK(mx.array(LARGE, [1, LARGE.length]), 40);
      return Array.from(st.typicalP(st.minP(st.topP(logits, 0.9, true), 0.05), 0.8).toFloat32());
    });
    const sortedIds = afterTopK.map((c) => c.id); // row column j is token sortedIds[j]
    expect(kept(row).map((j) => sortedIds[j]).sort((a, b) => a - b)).toEqual(ref.ids(expected));
  });
});

describe("logit-changing stages", () => {
  test("logit bias then repetition / frequency / presence penalties, with repeats and bias-only ids", () => {
    const v = SMALL.map((x, i) => (i === 5 ? -2 : x));
    const history = [3, 5, 3, 9, 0, 3];
    const bias = { 1: 5, 3: -1.5, 11: 0.25 };
    const p = { repeat: 1.3, frequency: 0.4, presence: 0.7 };
    const row = mx.tidy(() =>
      Array.from(
        st.adjust(mx.array(v, [1, v.length]), {
          bias: { ids: mx.array(Object.keys(bias).map(Number), [3], mx.Dtype.int32), values: mx.array(Object.values(bias)) },
          history: mx.array(history, [history.length], mx.Dtype.int32),
          penalties: p,
        }).toFloat32(),
      ),
    );
    expectClose(row, ref.biasAndPenalties(v, bias, history, p), 1e-5);
  });

  test("penalties alone and bias alone match their definitions", () => {
    const history = [2, 2, 2, 7];
    const p = { repeat: 1.5, frequency: 0, presence: 0 };
    expectClose(run(SMALL, (x) => st.penalize(x, mx.array(history, [4], mx.Dtype.int32), p)), ref.biasAndPenalties(SMALL, {}, history, p), 1e-5);
    expectClose(run(SMALL, (x) => st.logitBias(x, mx.array([0, 4], [2], mx.Dtype.int32), mx.array([-100, 2]))), ref.biasAndPenalties(SMALL, { 0: -100, 4: 2 }, [], p), 1e-5);
  });

  test("temperature divides the logits; 0 keeps only the maximum", () => {
    expectClose(run(SMALL, (x) => st.temperature(x, 0.7)), SMALL.map((x) => x / 0.7));
    expect(kept(run(SMALL, (x) => st.temperature(x, 0)))).toEqual([3]);
  });

  test("dynamic temperature maps the normalized entropy of the candidates into [t - range, t + range]", () => {
    for (const [t, range, exponent] of [[0.8, 0.5, 1], [1, 0.3, 2], [0.4, 1, 0.5], [1.2, 2, 1]]) {
      for (const v of [SMALL, LARGE]) {
        const got = ref.distribution(ref.candidates(run(v, (x) => st.dynamicTemperature(x, t, range, exponent))), v.length);
        const want = ref.distribution(ref.dynamicTemperature(ref.candidates(v), t, range, exponent), v.length);
        expectClose(got, want);
      }
    }
  });

  test("dynamic temperature counts only the remaining candidates (after min-p)", () => {
    const expected = ref.dynamicTemperature(ref.minP(ref.candidates(LARGE), 0.02), 1, 0.5, 1);
    const got = run(LARGE, (x) => st.dynamicTemperature(st.minP(x, 0.02), 1, 0.5, 1));
    expectClose(ref.distribution(ref.candidates(got), LARGE.length), ref.distribution(expected, LARGE.length));
  });
});

describe("mirostat v2", () => {
  test("truncates to surprise -log2 p <= mu (the most likely token always stays)", () => {
    for (const mu of [0.01, 1, 3, 6, 10]) {
      for (const v of [SMALL, LARGE]) {
        const row = mx.tidy(() => Array.from(st.mirostatTruncate(mx.array(v, [1, v.length]), mx.full([1, 1], mu)).toFloat32()));
        expectKept(v, row, ref.mirostat(ref.candidates(v), mu));
      }
    }
  });

  test("updates mu by eta times the surprise of the chosen token over the truncated set, minus tau", () => {
    const mu = 4;
    const truncated = ref.mirostat(ref.candidates(SMALL), mu);
    for (const c of truncated) {
      const got = mx.tidy(() => {
        const x = st.mirostatTruncate(mx.array(SMALL, [1, SMALL.length]), mx.full([1, 1], mu));
        return st.mirostatUpdate(x, mx.array([c.id], [1], mx.Dtype.int32), mx.full([1, 1], mu), 3, 0.1).item();
      });
      expect(got).toBeCloseTo(ref.mirostatUpdate(truncated, c.id, mu, 3, 0.1), 5);
    }
  });
});

describe("the draw", () => {
  test("a seeded draw follows softmax(x): frequencies over 4000 draws within 3 sigma", () => {
    const v = [1, 0, 2, -1, 1.5];
    const probs = ref.distribution(ref.candidates(v), v.length);
    const N = 4000;
    const counts = new Array(v.length).fill(0);
    mx.tidy(() => {
      const x = mx.broadcastTo(mx.array(v, [1, v.length]), [N, v.length]);
      const drawn = st.draw(x, mx.randomKey(11)).toFloat32();
      for (const i of drawn) counts[i]++;
    });
    probs.forEach((p, i) => expect(Math.abs(counts[i] / N - p)).toBeLessThan(3 * Math.sqrt((p * (1 - p)) / N) + 1e-9));
  });

  test("removed tokens are never drawn; greedy is the argmax", () => {
    const ids = mx.tidy(() => Array.from(st.draw(st.minP(mx.broadcastTo(mx.array(SMALL, [1, 12]), [500, 12]), 0.5), mx.randomKey(3)).toFloat32()));
    const allowed = ref.ids(ref.minP(ref.candidates(SMALL), 0.5));
    expect(ids.every((i) => allowed.includes(i))).toBe(true);
    expect(mx.tidy(() => st.greedy(mx.array(SMALL, [1, 12])).item())).toBe(3);
  });
});
