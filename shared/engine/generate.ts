// Single-sequence generation: chunked prefill into the layer caches, then decode with the
// next step's graph built while the current token computes (as mlx-lm does), stopping on
// EOS, stop strings or max tokens. Emits events for streaming.
import { array, asyncEvaluate, dispose, Dtype, evaluate, keep, type MxArray, reshape, slice, tidy } from "../mlx/index.ts";
import type { LayerCache } from "../models/cache.ts";
import type { LanguageModel } from "../models/model.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { FinishReason } from "./engine.ts";
import { GREEDY, logprobOf, Sampler, type SamplingParams } from "./sampler.ts";
import { StopMatcher } from "./stop-matcher.ts";


export type GenerateRequest = {
  promptIds: readonly number[];
  maxTokens: number;
  sampling?: SamplingParams;
  stop?: readonly string[];
  /** Prompt tokens per forward pass during prefill. */
  prefillChunk?: number;
  logprobs?: boolean;
  signal?: AbortSignal;
};

export type GenerationEvent =
  | { type: "token"; id: number; text: string; logprob?: number }
  /** Text held back (a partial character or stop string) released when generation ends. */
  | { type: "text"; text: string }
  | {
      type: "done";
      reason: FinishReason;
      stop: string | null;
      promptTokens: number;
      completionTokens: number;
      /** The token ids whose K/V the caches now hold: the prompt and the generated tokens fed back. */
      cachedIds: number[];
      prefillMs: number;
      decodeMs: number;
    };

export type Generator = { model: LanguageModel; tokenizer: Tokenizer };

/** Runs the prompt through the caches in chunks; returns logits (1, V) at its last position. */
export function prefill(model: LanguageModel, ids: readonly number[], caches: LayerCache[], chunk = 512): MxArray {
  if (!ids.length) throw new RangeError("prefill needs at least one token");
  let at = 0;
  while (ids.length - at > chunk) {
    tidy(() => {
      model.forward(array(Int32Array.from(ids.slice(at, at + chunk)), [1, chunk], Dtype.int32), caches, { lastOnly: true });
      evaluate(...caches.flatMap((c) => c.arrays()));
    });
    at += chunk;
  }
  const rest = ids.slice(at);
  return tidy(() => {
    const logits = model.forward(array(Int32Array.from(rest), [1, rest.length], Dtype.int32), caches, { lastOnly: true });
    return reshape(slice(logits, [0, logits.shape[1] - 1, 0], [1, logits.shape[1], logits.shape[2]]), [1, logits.shape[2]]);
  });
}

type Step = { id: MxArray; logprob: MxArray | null };

/**
 * Generates from `promptIds` into `caches` (which may already hold a prefix of them: only
 * tokens past the caches' offset are prefilled). Yields a token event per generated token
 * (text is "" while a character or a possible stop string is incomplete) and a final done.
 */
export async function* generate(g: Generator, req: GenerateRequest, caches: LayerCache[], cachedTokens = 0): AsyncGenerator<GenerationEvent> {
  const { model, tokenizer } = g;
  const sampler = new Sampler(req.sampling ?? GREEDY);
  const stops = new StopMatcher(req.stop ?? []);
  const text = tokenizer.createStreamDecoder();
  const eos = new Set(tokenizer.eosIds);
  const t0 = performance.now();
  let pending: Step | null = null;
  let completion = 0;
  const fed: number[] = [];
  let reason: FinishReason = "length";
  let stopHit: string | null = null;
  const choose = (logits: MxArray): Step =>
    tidy(() => {
      const id = keep(sampler.sample(logits));
      const logprob = req.logprobs ? keep(logprobOf(logits, id)) : null;
      return { id, logprob };
    });
  const release = (s: Step | null) => s && dispose([s.id, s.logprob]);
  let tPrefill = 0;
  try {
    const first = prefill(model, req.promptIds.slice(cachedTokens), caches, req.prefillChunk);
    pending = choose(first);
    first.free();
    asyncEvaluate(pending.id, ...(pending.logprob ? [pending.logprob] : []));
    while (completion < req.maxTokens) {
      const current: Step = pending!;
      pending = null;
      // Queue the next step before reading this token, unless this is the last one allowed.
      const feeds = completion + 1 < req.maxTokens;
      if (feeds) {
        const logits = tidy(() => {
          const out = model.forward(reshape(current.id, [1, 1]), caches);
          return reshape(out, [1, out.shape[2]]);
        });
        pending = choose(logits);
        logits.free();
        asyncEvaluate(pending.id, ...(pending.logprob ? [pending.logprob] : []));
      }
      const id = current.id.item();
      const logprob = current.logprob?.item();
      release(current);
      if (feeds) fed.push(id);
      if (completion === 0) tPrefill = performance.now() - t0;
      completion++;
      if (eos.has(id)) {
        reason = "eos";
        break;
      }
      const r = stops.push(text.push(id));
      yield { type: "token", id, text: r.emit, ...(logprob !== undefined ? { logprob } : {}) };
      if (r.stop !== null) {
        reason = "stop";
        stopHit = r.stop;
        break;
      }
      if (req.signal?.aborted) {
        reason = "cancelled";
        break;
      }
      // Let the event loop run (I/O, cancellation) between tokens.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (reason !== "stop") {
      const tail = stops.push(text.flush()).emit + stops.flush();
      if (tail) yield { type: "text", text: tail };
    }
  } finally {
    release(pending);
    sampler.free();
  }
  yield {
    type: "done", reason, stop: stopHit, promptTokens: req.promptIds.length, completionTokens: completion,
    cachedIds: [...req.promptIds, ...fed], prefillMs: tPrefill, decodeMs: performance.now() - t0 - tPrefill,
  };
}
