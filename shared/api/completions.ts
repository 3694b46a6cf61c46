// OpenAI's legacy Completions <-> engine: a plain prompt (text or token ids), no template; the
// turn's events become a text_completion or its chunk stream, then [DONE].
import { errorFields, log } from "../log.ts";
import { invalid, openaiErrorBody, toApiError } from "./errors.ts";
import { collectTurn, startTurn, type TokenLogprob } from "./generation.ts";
import { checkSampling, created, FINISH, type Sampling, stopsOf, usageOf } from "./openai.ts";
import type { CompletionUsage, FinishReason, LegacyLogprobs, TextCompletion } from "./openai-schema.ts";
import { buildCompletionPrompt } from "./prompt.ts";
import { samplingOf } from "./sampling.ts";
import { type Call, newId, type Served } from "./service.ts";
import { SSE_COMMENT_PING, SSE_DONE, sseData, sseResponse } from "./sse.ts";

export type CompletionInput = Sampling & {
  model: string;
  prompt: string | string[] | number[] | number[][];
  max_tokens?: number | null;
  echo?: boolean | null;
  logprobs?: number | null;
  suffix?: string | null;
  best_of?: number | null;
};

function completionPrompt(input: CompletionInput): string | number[] {
  const p = input.prompt;
  if (typeof p === "string") return p;
  if (p.length === 0) throw invalid("prompt", "must not be empty");
  if (typeof p[0] === "number") return p as number[];
  if (p.length > 1) throw invalid("prompt", "only one prompt per request is supported");
  return p[0] as string | number[];
}

async function beginCompletion(served: Served, input: CompletionInput, call: Call) {
  served.aliases.resolve(input.model);
  checkSampling(input);
  if ((input.best_of ?? 1) !== 1) throw invalid("best_of", "only best_of=1 is supported");
  if (input.suffix) throw invalid("suffix", "is not supported");
  const logprobs = input.logprobs ?? null;
  if (logprobs !== null && input.echo) throw invalid("logprobs", "with echo is not supported (the prompt's tokens are not scored)");
  const raw = completionPrompt(input);
  const ids = buildCompletionPrompt(served.model, raw);
  const echo = input.echo ? (typeof raw === "string" ? raw : served.model.tokenizer.decode(raw)) : "";
  const turn = await startTurn(served.engine, served.model, {
    tenant: call.tenant,
    agentId: call.agentId,
    promptIds: ids,
    maxTokens: input.max_tokens ?? 16,
    sampling: samplingOf(input, served.model.tokenizer),
    stop: stopsOf(input.stop),
    logprobs: logprobs !== null,
    topLogprobs: logprobs ?? 0,
    signal: call.signal,
    observe: call.observe,
    tools: null,
  });
  return { turn, echo, logprobs: logprobs !== null };
}

/**
 * The Completions API's logprobs for `lp`, whose first token starts at `offset` in the text:
 * each token's n best alternatives by text, with the token itself (so up to n + 1).
 */
function legacyLogprobs(lp: TokenLogprob[], offset: number): LegacyLogprobs {
  const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let at = offset;
  for (const l of lp) {
    out.tokens.push(l.token);
    out.token_logprobs.push(l.logprob);
    out.text_offset.push(at);
    at += l.token.length;
    const top: Record<string, number> = Object.create(null); // token texts such as "__proto__" are plain keys
    for (const t of [...l.top_logprobs, l]) if (!Object.hasOwn(top, t.token)) top[t.token] = t.logprob;
    out.top_logprobs.push(top);
  }
  return out;
}

/** POST /v1/completions without streaming. */
export async function createCompletion(served: Served, input: CompletionInput, call: Call, fingerprint: string): Promise<TextCompletion> {
  const { turn, echo, logprobs } = await beginCompletion(served, input, call);
  const { blocks, logprobs: lp, done } = await collectTurn(turn);
  const text = blocks.map((b) => (b.type === "text" ? b.text : "")).join("");
  return {
    id: newId("cmpl-"),
    object: "text_completion",
    created: created(),
    model: input.model,
    system_fingerprint: fingerprint,
    choices: [{ text: echo + text, index: 0, logprobs: logprobs ? legacyLogprobs(lp, 0) : null, finish_reason: FINISH[done.finish] }],
    usage: usageOf(done.usage),
  };
}

/** POST /v1/completions with stream: true. */
export async function streamCompletion(served: Served, input: CompletionInput, call: Call, fingerprint: string): Promise<Response> {
  const cancel = new AbortController();
  const { turn, echo, logprobs } = await beginCompletion(served, input, { ...call, signal: AbortSignal.any([call.signal, cancel.signal]) });
  const meta = { id: newId("cmpl-"), created: created(), model: input.model, fingerprint, includeUsage: input.stream_options?.include_usage === true };
  const chunk = (choice: { text: string; finish_reason: FinishReason | null; logprobs?: LegacyLogprobs | null } | null, usage?: CompletionUsage) =>
    sseData({
      id: meta.id,
      object: "text_completion",
      created: meta.created,
      model: meta.model,
      system_fingerprint: meta.fingerprint,
      choices: choice ? [{ index: 0, logprobs: null, ...choice }] : [],
      ...(meta.includeUsage ? { usage: usage ?? null } : {}),
    });
  async function* frames(): AsyncGenerator<string> {
    try {
      if (echo) yield chunk({ text: echo, finish_reason: null });
      let offset = 0;
      for await (const e of turn) {
        if (e.type === "text") {
          const lp = logprobs ? legacyLogprobs(e.logprobs, offset) : null;
          if (lp) offset = lp.text_offset.length ? lp.text_offset.at(-1)! + lp.tokens.at(-1)!.length : offset;
          yield chunk({ text: e.text, finish_reason: null, logprobs: lp });
        }
        else if (e.type === "done") {
          yield chunk({ text: "", finish_reason: FINISH[e.finish] });
          if (meta.includeUsage) yield chunk(null, usageOf(e.usage));
          yield SSE_DONE;
        }
      }
    } catch (err) {
      const e = toApiError(err);
      if (e.kind === "internal") log.error("stream failed", { requestId: call.requestId, error: errorFields(err) });
      yield sseData(openaiErrorBody(e));
    }
  }
  return sseResponse(
    (gone) => {
      gone.addEventListener("abort", () => cancel.abort(), { once: true });
      return frames();
    },
    { keepAlive: () => SSE_COMMENT_PING, keepAliveMs: call.keepAliveMs },
  );
}
