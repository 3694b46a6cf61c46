// Single-sequence generation: chunked prefill into the layer caches, then decode with the
// next step's graph built while the current token computes (as mlx-lm does), stopping on
// EOS, stop strings or max tokens. Emits events for streaming.
import { array, dispose, Dtype, evaluate, type MxArray, reshape, slice, tidy } from "../mlx/index.ts";
import type { LayerCache } from "../models/cache.ts";
import type { LanguageModel } from "../models/model.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { type Draw, draw, readDraw, type RowSampler, startDraw } from "./draw.ts";
import type { FinishReason, TopLogprob } from "./engine.ts";
import { samplerForRequest } from "./sampling/for-request.ts";
import { GREEDY, type SamplingOptions } from "./sampling/options.ts";
import type { JsonFormat } from "./structured/constraint.ts";
import { TokenOutput } from "./token-output.ts";

export type GenerateRequest = {
  promptIds: readonly number[];
  maxTokens: number;
  /** Greedy when absent. */
  sampling?: SamplingOptions;
  /** Structured output: the completion is this JSON and ends once the value is complete. */
  format?: JsonFormat | null;
  stop?: readonly string[];
  /** Prompt tokens per forward pass during prefill. */
  prefillChunk?: number;
  logprobs?: boolean;
  topLogprobs?: number;
  signal?: AbortSignal;
};

export type GenerationEvent =
  | { type: "token"; id: number; text: string; logprob?: number; topLogprobs?: TopLogprob[] }
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
    prefillStep(model, ids.slice(at, at + chunk), caches, false);
    at += chunk;
  }
  return prefillStep(model, ids.slice(at), caches, true)!;
}

/**
 * One prefill forward of `ids` for one sequence. The last one (`final`) returns logits (1, V)
 * at its last position; the others evaluate the caches so their graphs are not carried forward.
 */
export function prefillStep(model: LanguageModel, ids: readonly number[], caches: LayerCache[], final: boolean): MxArray | null {
  return tidy(() => {
    const logits = model.forward(array(Int32Array.from(ids), [1, ids.length], Dtype.int32), caches, { lastOnly: true });
    if (!final) {
      evaluate(...caches.flatMap((c) => c.arrays()));
      return null;
    }
    return reshape(slice(logits, [0, logits.shape[1] - 1, 0], [1, logits.shape[1], logits.shape[2]]), [1, logits.shape[2]]);
  });
}

/**
 * Generates from `promptIds` into `caches` (which may already hold a prefix of them: only
 * tokens past the caches' offset are prefilled). Yields a token event per generated token
 * (text is "" while a character or a possible stop string is incomplete) and a final done.
 * Structured output ends as soon as its value is complete.
 */
export async function* generate(g: Generator, req: GenerateRequest, caches: LayerCache[], cachedTokens = 0): AsyncGenerator<GenerationEvent> {
  const { model, tokenizer } = g;
  const chain = samplerForRequest({ sampling: req.sampling ?? GREEDY, promptIds: req.promptIds, maxTokens: req.maxTokens, format: req.format }, model.vocabSize, tokenizer);
  const rows: RowSampler[] = [{ chain, logprobs: req.logprobs === true, topLogprobs: req.topLogprobs ?? 0 }];
  // A constraint's next mask depends on this token, so its next step waits for it.
  const pipelined = !req.format;
  const out = new TokenOutput(tokenizer, { stop: req.stop, maxTokens: req.maxTokens });
  const t0 = performance.now();
  let pending: Draw | null = null;
  const fed: number[] = [];
  const next = (logits: MxArray): Draw => {
    const d = draw(rows, logits);
    startDraw(d);
    return d;
  };
  let tPrefill = 0;
  try {
    const first = prefill(model, req.promptIds.slice(cachedTokens), caches, req.prefillChunk);
    pending = next(first);
    first.free();
    while (out.count < req.maxTokens) {
      const current: Draw = pending!;
      pending = null;
      let pick = pipelined ? null : readDraw(current, rows)[0];
      if (pick) chain.accept(pick.id);
      // Queue the next step before reading this token, unless this is the last one allowed.
      const feeds = out.count + 1 < req.maxTokens && !(pick && (chain.done || tokenizer.eosIds.includes(pick.id)));
      if (feeds) {
        const logits = tidy(() => {
          const input = pick ? array(Int32Array.of(pick.id), [1, 1], Dtype.int32) : reshape(current.ids, [1, 1]);
          const o = model.forward(input, caches);
          return reshape(o, [1, o.shape[2]]);
        });
        pending = next(logits);
        logits.free();
      }
      if (!pick) {
        pick = readDraw(current, rows)[0];
        chain.accept(pick.id);
      }
      if (feeds) fed.push(pick.id);
      if (out.count === 0) tPrefill = performance.now() - t0;
      const e = out.push(pick.id, pick.stats);
      if (chain.done) out.complete();
      if (e) yield e;
      if (out.reason) break;
      if (req.signal?.aborted) {
        out.reason = "cancelled";
        break;
      }
      // Let the event loop run (I/O, cancellation) between tokens.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const tail = out.end("length");
    if (tail) yield { type: "text", text: tail };
  } finally {
    dispose(pending);
    chain.free();
  }
  yield {
    type: "done", reason: out.reason!, stop: out.stop, promptTokens: req.promptIds.length, completionTokens: out.count,
    cachedIds: [...req.promptIds, ...fed], prefillMs: tPrefill, decodeMs: performance.now() - t0 - tPrefill,
  };
}
