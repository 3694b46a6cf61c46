// Each sampler stage of the fused CPU kernel (ffi/sampler_cpu.cpp) against its published
// definition (llama.cpp's src/llama-sampling.cpp), recomputed in plain TypeScript in reference.ts,
// on fixed logit vectors. The kernel runs with only the stage under test on and returns its final
// distribution over the vocabulary: the kept set equals the reference's exactly, and the
// distribution agrees to float32 precision. The draw is an inverse CDF, so for u on a grid the
// token is exactly the reference's (u within 1e-4 of a step is skipped).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";
import { SamplerChain } from "../../shared/engine/sampling/index.ts";
import * as ref from "./reference.ts";

let baseline = 0;
beforeEach(() => (baseline = mx.handleCounts().live));
afterEach(() => expect(mx.handleCounts().live).toBe(baseline));

const SMALL = [2.5, -1, 0.3, 4.1, 3.9, -0.7, 1.2, 0, 2.2, -3, 0.9, 3.1];
const LARGE = ref.logitVector(2000, 7);
const TOL = 2e-5;
const GRID = Array.from({ length: 97 }, (_, i) => (i + 0.5) / 97);

const OFF: mx.SampleParams = {
  temperature: 1, topK: 0, topP: 1, minP: 0, typicalP: 1, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
  penaltyLastN: 0, dynatempRange: 0, dynatempExponent: 1, mirostat: 0, mirostatTau: 5, mirostatEta: 0.1, u: 0.5,
};

type Extra = { bias?: Record<number, number>; history?: number[]; mu?: number; mask?: number[] };

/** The kernel over `logits` with `p`'s stages on: its final distribution, its pick, mirostat's new mu. */
function run(logits: readonly number[], p: Partial<mx.SampleParams>, extra: Extra = {}): { probs: number[]; id: number; mu: number | null } {
  return mx.tidy(() => {
    const V = logits.length;
    const bias = extra.bias && {
      ids: mx.array(Object.keys(extra.bias).map(Number), [Object.keys(extra.bias).length], mx.Dtype.int32),
      values: mx.array(Object.values(extra.bias)),
    };
    const r = mx.sampleRow(mx.array(logits, [1, V]), { ...OFF, ...p }, {
      bias,
      history: extra.history && mx.array(extra.history, [extra.history.length], mx.Dtype.int32),
      mu: extra.mu === undefined ? null : mx.full([1, 1], extra.mu),
      mask: extra.mask && mx.array(Uint8Array.from({ length: V }, (_, i) => (extra.mask!.includes(i) ? 1 : 0)), [1, V], mx.Dtype.bool),
    }, { probabilities: true });
    return { probs: Array.from(r.probabilities!.toFloat32()), id: r.id.item(), mu: r.mu?.item() ?? null };
  });
}

const kept = (probs: number[]) => probs.flatMap((p, i) => (p > 0 ? [i] : []));

/** The kept set equals the reference's, and the distribution over it agrees. */
function expectKept(probs: number[], expected: ref.Candidate[]) {
  expect(kept(probs)).toEqual(ref.ids(expected));
  expectClose(probs, ref.distribution(expected, probs.length));
}

function expectClose(a: number[], b: number[], tol = TOL) {
  expect(a.length).toBe(b.length);
  const worst = Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  expect(worst).toBeLessThan(tol);
}

/** For each u of the grid away from a step, the kernel draws the reference's inverse CDF over `expected` in the draw's order. */
function expectDraws(logits: readonly number[], p: Partial<mx.SampleParams>, ordered: ref.Candidate[], extra: Extra = {}) {
  let checked = 0;
  for (const u of GRID) {
    const want = ref.inverseCdf(ordered, u);
    if (want.margin < 1e-4) continue;
    expect({ u, id: run(logits, { ...p, u }, extra).id }).toEqual({ u, id: want.id });
    checked++;
  }
  expect(checked).toBeGreaterThan(GRID.length / 2);
}

describe("truncation stages keep exactly llama.cpp's set", () => {
  for (const [name, v] of [["12 logits", SMALL], ["2000 logits", LARGE]] as const) {
    test(`top-k on ${name}: the k largest, drawn most likely first`, () => {
      for (const k of [1, 3, 7, 11]) {
        const expected = ref.topK(ref.candidates(v), k);
        expectKept(run(v, { topK: k }).probs, expected);
        expectDraws(v, { topK: k }, ref.drawOrder(expected, true));
      }
    });

    test(`top-p on ${name}: up to the first token whose running sum reaches p`, () => {
      for (const p of [0.05, 0.3, 0.5, 0.9, 0.99]) expectKept(run(v, { topP: p }).probs, ref.topP(ref.candidates(v), p));
      expectKept(run(v, { topP: 1 }).probs, ref.candidates(v));
    });

    test(`min-p on ${name}: p >= min_p * p_max`, () => {
      for (const p of [0.01, 0.05, 0.2, 0.6, 1]) expectKept(run(v, { minP: p }).probs, ref.minP(ref.candidates(v), p));
    });

    test(`typical-p on ${name}: by |-ln p - H| until the mass exceeds p`, () => {
      for (const p of [0.1, 0.5, 0.9, 0.95]) expectKept(run(v, { typicalP: p }).probs, ref.typical(ref.candidates(v), p));
    });
  }

  test("top-p after top-k (the compacted, sorted row) keeps the reference's set", () => {
    for (const p of [0.2, 0.7, 0.95]) expectKept(run(LARGE, { topK: 64, topP: p }).probs, ref.topP(ref.topK(ref.candidates(LARGE), 64), p));
  });

  test("stages compose over what earlier stages removed (renormalized over the rest)", () => {
    const expected = ref.typical(ref.minP(ref.topP(ref.topK(ref.candidates(LARGE), 40), 0.9), 0.05), 0.8);
    const p = { topK: 40, topP: 0.9, minP: 0.05, typicalP: 0.8 };
    expectKept(run(LARGE, p).probs, expected);
    expectDraws(LARGE, p, ref.drawOrder(expected, true));
    const withoutTopK = ref.typical(ref.minP(ref.topP(ref.candidates(LARGE), 0.9), 0.02), 0.9);
    expectKept(run(LARGE, { topP: 0.9, minP: 0.02, typicalP: 0.9 }).probs, withoutTopK);
    expectDraws(LARGE, { topP: 0.9, minP: 0.02, typicalP: 0.9 }, ref.drawOrder(withoutTopK, false));
  });
});

describe("logit-changing stages", () => {
  const penaltiesOf = (p: { repeat: number; frequency: number; presence: number }, n: number) =>
    ({ repetitionPenalty: p.repeat, frequencyPenalty: p.frequency, presencePenalty: p.presence, penaltyLastN: n });

  test("logit bias then repetition / frequency / presence penalties, with repeats and bias-only ids", () => {
    const v = SMALL.map((x, i) => (i === 5 ? -2 : x));
    const history = [3, 5, 3, 9, 0, 3];
    const bias = { 1: 5, 3: -1.5, 11: 0.25 };
    const p = { repeat: 1.3, frequency: 0.4, presence: 0.7 };
    const { probs } = run(v, penaltiesOf(p, 8), { bias, history });
    expectClose(probs, ref.distribution(ref.candidates(ref.biasAndPenalties(v, bias, history, p)), v.length), 1e-6);
  });

  test("penalties alone and bias alone match their definitions", () => {
    const history = [2, 2, 2, 7];
    const p = { repeat: 1.5, frequency: 0, presence: 0 };
    const dist = (x: number[]) => ref.distribution(ref.candidates(x), x.length);
    expectClose(run(SMALL, penaltiesOf(p, 4), { history }).probs, dist(ref.biasAndPenalties(SMALL, {}, history, p)), 1e-6);
    expectClose(run(SMALL, {}, { bias: { 0: -100, 4: 2 } }).probs, dist(ref.biasAndPenalties(SMALL, { 0: -100, 4: 2 }, [], p)), 1e-6);
  });

  test("temperature divides the logits; 0 is greedy (the argmax)", () => {
    expectClose(run(SMALL, { temperature: 0.7 }).probs, ref.distribution(ref.candidates(SMALL.map((x) => x / 0.7)), SMALL.length));
    expect(run(SMALL, { temperature: 0 }).id).toBe(3);
  });

  test("dynamic temperature maps the normalized entropy of the candidates into [t - range, t + range]", () => {
    for (const [t, range, exponent] of [[0.8, 0.5, 1], [1, 0.3, 2], [0.4, 1, 0.5], [1.2, 2, 1]]) {
      for (const v of [SMALL, LARGE]) {
        const got = run(v, { temperature: t, dynatempRange: range, dynatempExponent: exponent }).probs;
        expectClose(got, ref.distribution(ref.dynamicTemperature(ref.candidates(v), t, range, exponent), v.length));
      }
    }
  });

  test("dynamic temperature counts only the remaining candidates (after min-p)", () => {
    const expected = ref.dynamicTemperature(ref.minP(ref.candidates(LARGE), 0.02), 1, 0.5, 1);
    expectClose(run(LARGE, { minP: 0.02, dynatempRange: 0.5 }).probs, ref.distribution(expected, LARGE.length));
  });
});

describe("mirostat v2", () => {
  test("truncates to surprise -log2 p <= mu (the most likely token always stays)", () => {
    for (const mu of [0.01, 1, 3, 6, 10]) {
      for (const v of [SMALL, LARGE]) expectKept(run(v, { mirostat: 2 }, { mu }).probs, ref.mirostat(ref.candidates(v), mu));
    }
  });

  test("draws over the truncated set and updates mu by eta times (the chosen token's surprise - tau)", () => {
    const mu = 4;
    const truncated = ref.mirostat(ref.candidates(SMALL), mu);
    const p = { mirostat: 2 as const, mirostatTau: 3, mirostatEta: 0.1 };
    expectDraws(SMALL, p, ref.drawOrder(truncated, false), { mu });
    for (const u of GRID) {
      const got = run(SMALL, { ...p, u }, { mu });
      expect(got.mu!).toBeCloseTo(ref.mirostatUpdate(truncated, got.id, mu, 3, 0.1), 5);
    }
  });
});

describe("the draw", () => {
  test("the inverse CDF at u over the whole vocabulary walks it in token order", () => {
    for (const v of [SMALL, LARGE]) expectDraws(v, {}, ref.candidates(v));
    expectDraws(SMALL, { temperature: 0.5 }, ref.candidates(SMALL.map((x) => x / 0.5)));
  });

  test("a seeded draw follows softmax(x): frequencies over 4000 draws within 3 sigma", () => {
    const v = [1, 0, 2, -1, 1.5];
    const probs = ref.distribution(ref.candidates(v), v.length);
    const N = 4000;
    const counts = new Array(v.length).fill(0);
    const chain = new SamplerChain({ seed: 11 }, v.length);
    const logits = mx.array(v, [1, v.length]);
    for (let i = 0; i < N; i++) counts[mx.tidy(() => chain.sample(logits).item())]++;
    logits.free();
    chain.free();
    probs.forEach((p, i) => expect(Math.abs(counts[i] / N - p)).toBeLessThan(3 * Math.sqrt((p * (1 - p)) / N) + 1e-9));
  });

  test("removed tokens are never drawn; greedy takes the most likely kept token", () => {
    const allowed = ref.ids(ref.minP(ref.candidates(SMALL), 0.5));
    for (const u of [0, ...GRID, 1 - 2 ** -53]) expect(allowed).toContain(run(SMALL, { minP: 0.5, u }).id);
    const typical = ref.typical(ref.candidates(LARGE), 0.3);
    expect(run(LARGE, { temperature: 0, typicalP: 0.3 }).id).toBe(ref.drawOrder(typical, true)[0].id);
  });
});

describe("inputs", () => {
  test("the mask removes tokens first; bfloat16 and strided rows give the float32 result", () => {
    const mask = [0, 4, 8, 11];
    expectKept(run(SMALL, {}, { mask }).probs, ref.candidates(SMALL.map((x, i) => (mask.includes(i) ? x : -Infinity))));
    const want = run(SMALL, { temperature: 0.9, topK: 5, u: 0.3 });
    const [bf16, strided] = mx.tidy(() => {
      const x = mx.array(SMALL, [1, 12]);
      const pick = (row: mx.MxArray) => mx.sampleRow(row, { ...OFF, temperature: 0.9, topK: 5, u: 0.3 }).id.item();
      return [pick(mx.astype(x, mx.Dtype.bfloat16)), pick(mx.slice(mx.array(SMALL.flatMap((l) => [l, 9]), [1, 24]), [0, 0], [1, 24], [1, 2]))];
    });
    expect(strided).toBe(want.id);
    expect(bf16).toBe(want.id);
  });

  test("the penalty window slides by the chosen id and keeps at most penalty_last_n", () => {
    const windows = mx.tidy(() => {
      const x = mx.array(SMALL, [1, 12]);
      const p = { ...OFF, temperature: 0, repetitionPenalty: 1.1 };
      const slide = (history: number[] | null, n: number) =>
        Array.from(mx.astype(mx.sampleRow(x, { ...p, penaltyLastN: n }, { history: history && mx.array(history, [history.length], mx.Dtype.int32) }).window!, mx.Dtype.float32).toFloat32());
      return [slide(null, 3), slide([7], 3), slide([7, 8, 9], 3), slide([7, 8, 9], 1)];
    });
    expect(windows).toEqual([[3], [7, 3], [8, 9, 3], [3]]);
  });

  test("bad inputs are errors, not crashes", () => {
    mx.tidy(() => {
      const x = mx.array(SMALL, [1, 12]);
      expect(() => mx.sampleRow(mx.reshape(x, [2, 6]), OFF)).toThrow(/\(1, V\)/);
      expect(() => mx.sampleRow(x, { ...OFF, mirostat: 2 })).toThrow(/mu/);
      expect(() => mx.sampleRow(x, OFF, { mask: mx.full([1, 5], 1, mx.Dtype.bool) })).toThrow(/mask/);
    });
  });
});
