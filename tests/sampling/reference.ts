// The sampler stages written out in plain TypeScript, loop by loop as llama.cpp's
// src/llama-sampling.cpp writes them, for the tests to compare the fused CPU kernel
// (ffi/sampler_cpu.cpp) against. Tokens are kept in float64 here; the kernel runs in float32.

export type Candidate = { id: number; logit: number; p: number };

export function candidates(logits: readonly number[]): Candidate[] {
  return logits.map((logit, id) => ({ id, logit, p: 0 })).filter((c) => c.logit > -Infinity);
}

/** llama_sampler_softmax_impl: probabilities over the candidates, optionally sorted by logit. */
export function softmax(cur: Candidate[], sort: boolean): Candidate[] {
  const c = sort ? [...cur].sort((a, b) => b.logit - a.logit) : [...cur];
  const maxL = Math.max(...c.map((x) => x.logit));
  let sum = 0;
  for (const x of c) sum += x.p = Math.exp(x.logit - maxL);
  for (const x of c) x.p /= sum;
  return c;
}

export function biasAndPenalties(
  logits: readonly number[], bias: Record<number, number>, history: readonly number[],
  p: { repeat: number; frequency: number; presence: number },
): number[] {
  const out = [...logits];
  for (const [id, b] of Object.entries(bias)) out[Number(id)] += b;
  const count = new Map<number, number>();
  for (const id of history) count.set(id, (count.get(id) ?? 0) + 1);
  for (const [id, c] of count) {
    out[id] = out[id] <= 0 ? out[id] * p.repeat : out[id] / p.repeat;
    out[id] -= c * p.frequency + (c > 0 ? 1 : 0) * p.presence;
  }
  return out;
}

export function topK(cur: Candidate[], k: number): Candidate[] {
  return [...cur].sort((a, b) => b.logit - a.logit).slice(0, Math.min(k, cur.length));
}

export function topP(cur: Candidate[], p: number): Candidate[] {
  if (p >= 1) return cur;
  const c = softmax(cur, true);
  let cum = 0;
  for (let i = 0; i < c.length; i++) {
    cum += c[i].p;
    if (cum >= p) return c.slice(0, i + 1);
  }
  return c;
}

export function minP(cur: Candidate[], p: number): Candidate[] {
  if (p <= 0) return cur;
  const minLogit = Math.max(...cur.map((c) => c.logit)) + Math.log(p);
  return cur.filter((c) => c.logit >= minLogit);
}

export function typical(cur: Candidate[], p: number): Candidate[] {
  if (p >= 1) return cur;
  const c = softmax(cur, true);
  let entropy = 0;
  for (const x of c) entropy += -x.p * Math.log(x.p);
  const order = c.map((x, i) => ({ i, score: Math.abs(-Math.log(x.p) - entropy) })).sort((a, b) => a.score - b.score);
  let cum = 0;
  const kept: Candidate[] = [];
  for (const { i } of order) {
    kept.push(c[i]);
    cum += c[i].p;
    if (cum > p) break;
  }
  return kept;
}

/** llama_sampler_temp_ext_apply: the logits after (dynamic) temperature. */
export function dynamicTemperature(cur: Candidate[], t: number, range: number, exponent: number): Candidate[] {
  if (range <= 0) return cur.map((c) => ({ ...c, logit: c.logit / t }));
  if (cur.length <= 1) return cur;
  const lo = Math.max(0, t - range);
  const hi = t + range;
  const maxEntropy = -Math.log(1 / cur.length);
  const c = softmax(cur, true);
  let entropy = 0;
  for (const x of c) if (x.p > 0) entropy -= x.p * Math.log(x.p);
  const dynT = lo + (hi - lo) * Math.pow(entropy / maxEntropy, exponent);
  return c.map((x) => ({ ...x, logit: x.logit / dynT }));
}

/** Mirostat v2: the truncated candidates for `mu`, and mu after picking `id` among them. */
export function mirostat(cur: Candidate[], mu: number): Candidate[] {
  const c = softmax(cur, true);
  let n = c.findIndex((x) => -Math.log2(x.p) > mu);
  if (n === -1) n = c.length;
  return softmax(c.slice(0, Math.max(n, 1)), true);
}

export function mirostatUpdate(truncated: Candidate[], id: number, mu: number, tau: number, eta: number): number {
  const p = truncated.find((c) => c.id === id)!.p;
  return mu - eta * (-Math.log2(p) - tau);
}

/** Probabilities by id over `n` tokens (0 for removed ones). */
export function distribution(cur: Candidate[], n: number): number[] {
  const out = new Array(n).fill(0);
  for (const c of softmax(cur, false)) out[c.id] = c.p;
  return out;
}

/** The candidates in the order the draw walks them: most likely first after top-k, else by token id. */
export function drawOrder(cur: Candidate[], afterTopK: boolean): Candidate[] {
  return [...cur].sort(afterTopK ? (a, b) => b.logit - a.logit || a.id - b.id : (a, b) => a.id - b.id);
}

/** The inverse CDF at u over `cur` in its order (the first whose running probability exceeds u), and u's distance to the nearest step. */
export function inverseCdf(cur: Candidate[], u: number): { id: number; margin: number } {
  let cum = 0;
  let id = -1;
  let margin = Infinity;
  for (const c of softmax(cur, false)) {
    cum += c.p;
    margin = Math.min(margin, Math.abs(cum - u));
    if (id === -1 && cum > u) id = c.id;
  }
  return { id: id === -1 ? cur[cur.length - 1].id : id, margin };
}

export const ids = (cur: Candidate[]) => cur.map((c) => c.id).sort((a, b) => a - b);

/** A small seeded PRNG (mulberry32) for test vectors. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` logits spread like a model's: a few high, a long tail (distinct values, no ties). */
export function logitVector(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => 12 * Math.pow(r(), 3) - 4 + r() * 1e-3);
}
