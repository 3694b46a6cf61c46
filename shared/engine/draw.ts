// One step's choices for a batch of rows: each row by its own sampler chain, and what the rows
// asked to know about the model's distribution (the chosen token's log-probability, the k most
// likely tokens). Built lazily so an engine may queue it before reading the previous step.
import { asyncEvaluate, concatenate, dispose, evaluate, keep, type MxArray, slice, tidy } from "../mlx/index.ts";
import type { TopLogprob } from "./engine.ts";
import type { SamplerChain } from "./sampling/chain.ts";
import { logprobOf, topLogprobs } from "./sampling/logprobs.ts";
import type { TokenStats } from "./token-output.ts";

export type RowSampler = { chain: SamplerChain; logprobs: boolean; topLogprobs: number };

/** A step's choices, on MLX: ids (B,) int32; logprobs (B,) and the k best (B, k) when some row asks. Owned by the caller. */
export type Draw = { ids: MxArray; logprobs: MxArray | null; top: { ids: MxArray; logprobs: MxArray } | null };

/**
 * Each row of `logits` (B, V) drawn by its own chain, lazily.
 * @example const d = draw(rows, logits); const picks = readDraw(d, rows); // then chain.accept(picks[i].id)
 */
export function draw(rows: readonly RowSampler[], logits: MxArray): Draw {
  const B = rows.length;
  const V = logits.shape[1];
  const k = Math.max(0, ...rows.map((r) => r.topLogprobs));
  const d = tidy((): Draw => {
    const picked = rows.map((r, i) => r.chain.sample(B === 1 ? logits : slice(logits, [i, 0], [i + 1, V])));
    const ids = B === 1 ? picked[0] : concatenate(picked, 0);
    return {
      ids,
      logprobs: rows.some((r) => r.logprobs) ? logprobOf(logits, ids) : null,
      top: k > 0 ? topLogprobs(logits, Math.min(k, V)) : null,
    };
  });
  for (const a of [d.ids, d.logprobs, d.top?.ids, d.top?.logprobs]) if (a) keep(a);
  return d;
}

/** Starts computing a draw without waiting for it. */
export function startDraw(d: Draw): void {
  asyncEvaluate(...arrays(d));
}

/** Each row's token and the stats it asked for (evaluates); frees the draw. */
export function readDraw(d: Draw, rows: readonly RowSampler[]): { id: number; stats: TokenStats }[] {
  try {
    evaluate(...arrays(d));
    // Ids go through float32 (exact below 2^24) so a strided result reads correctly.
    const ids = Int32Array.from(d.ids.toFloat32());
    const lps = d.logprobs?.toFloat32() ?? null;
    const topIds = d.top ? Int32Array.from(d.top.ids.toFloat32()) : null;
    const topLps = d.top?.logprobs.toFloat32() ?? null;
    const k = d.top ? d.top.ids.shape[1] : 0;
    return rows.map((r, i) => {
      const stats: TokenStats = {};
      if (r.logprobs && lps) stats.logprob = lps[i];
      if (r.topLogprobs > 0 && topIds && topLps) {
        const best: TopLogprob[] = [];
        for (let j = 0; j < k; j++) best.push({ id: topIds[i * k + j], logprob: topLps[i * k + j] });
        stats.topLogprobs = best.sort((a, b) => b.logprob - a.logprob || a.id - b.id).slice(0, r.topLogprobs);
      }
      return { id: ids[i], stats };
    });
  } finally {
    dispose(d);
  }
}

const arrays = (d: Draw) => [d.ids, d.logprobs, d.top?.ids, d.top?.logprobs].filter((a): a is MxArray => a != null);
