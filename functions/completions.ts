// POST /v1/completions: the legacy OpenAI Completions API over a plain prompt (text or token ids),
// with its logprobs (n best per token) and the sampler chain's fields as on chat completions.
import { Elysia, t } from "elysia";
import { Type } from "@sinclair/typebox";
import { createCompletion, streamCompletion } from "../shared/api/completions.ts";
import { OpenAIHeaders, SamplingFields, Stop, StreamOptions, TextCompletion } from "../shared/api/openai-schema.ts";
import { refuseUnknownSamplers } from "../shared/api/sampling.ts";
import type { InferenceService } from "../shared/api/service.ts";
import { MaxTokens, OpenAIErrors } from "./chat-completions.ts";

const TokenIds = t.Array(Type.Integer({ minimum: 0 }), { minItems: 1 });

export const CompletionsBody = t.Object({
  model: t.String({ minLength: 1, maxLength: 256 }),
  prompt: t.Union([t.String(), t.Array(t.String(), { minItems: 1 }), TokenIds, t.Array(TokenIds, { minItems: 1 })]),
  max_tokens: t.Optional(t.Union([MaxTokens, t.Null()])),
  temperature: t.Optional(t.Union([t.Number({ minimum: 0, maximum: 2 }), t.Null()])),
  top_p: t.Optional(t.Union([t.Number({ minimum: 0, maximum: 1 }), t.Null()])),
  top_k: t.Optional(t.Union([Type.Integer({ minimum: 0 }), t.Null()])),
  n: t.Optional(t.Union([Type.Integer({ minimum: 1, maximum: 1 }), t.Null()], { error: "only n=1 is supported" })),
  best_of: t.Optional(t.Union([Type.Integer({ minimum: 1 }), t.Null()])),
  stop: t.Optional(Stop),
  seed: t.Optional(t.Union([Type.Integer(), t.Null()])),
  stream: t.Optional(t.Union([t.Boolean(), t.Null()])),
  stream_options: t.Optional(StreamOptions),
  echo: t.Optional(t.Union([t.Boolean(), t.Null()])),
  logprobs: t.Optional(t.Union([Type.Integer({ minimum: 0, maximum: 5 }), t.Null()])),
  suffix: t.Optional(t.Union([t.String(), t.Null()])),
  user: t.Optional(t.String({ maxLength: 256 })),
  ...SamplingFields,
});
export type CompletionsBody = typeof CompletionsBody.static;

export const CompletionsResponse = TextCompletion;
export type CompletionsResponse = typeof CompletionsResponse.static;

export const completions = (s: InferenceService) =>
  new Elysia({ name: "function.completions" }).post(
    "/v1/completions",
    async ({ body, request }) => {
      const served = s.served();
      const call = s.call(request, body.user, "user");
      // A streamed answer is a Response of server-sent events; Elysia passes it through unvalidated.
      if (body.stream) return (await streamCompletion(served, body, call, s.fingerprint())) as unknown as CompletionsResponse;
      return await createCompletion(served, body, call, s.fingerprint());
    },
    {
      transform: ({ body }) => refuseUnknownSamplers(body, ["best_of"]),
      body: CompletionsBody,
      headers: OpenAIHeaders,
      response: { 200: CompletionsResponse, ...OpenAIErrors },
      detail: { summary: "Create a completion of a plain prompt (OpenAI Completions API)", tags: ["openai"] },
    },
  );
