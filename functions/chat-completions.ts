// POST /v1/chat/completions: the OpenAI Chat Completions API, streaming or not, with tool calls,
// logprobs with top_logprobs, response_format (constrained JSON) and the sampler chain's fields
// (vLLM / llama.cpp names, sent at the top level or through the SDKs' extra_body).
// Refused with a 400: n > 1, non-text content, sampler fields this server does not implement.
import { Type } from "@sinclair/typebox";
import { Elysia, t } from "elysia";
import { createChatCompletion, streamChatCompletion } from "../shared/api/openai.ts";
import {
  ChatCompletion, ChatMessageParam, ChatToolChoice, ErrorResponse, FunctionTool, OpenAIHeaders, ResponseFormat, SamplingFields, Stop, StreamOptions,
} from "../shared/api/openai-schema.ts";
import { refuseUnknownSamplers } from "../shared/api/sampling.ts";
import type { InferenceService } from "../shared/api/service.ts";
import { MAX_TOKENS_LIMIT } from "./messages.ts";

const Nullable = <T extends Parameters<typeof t.Union>[0][number]>(s: T, error?: string) => t.Optional(t.Union([s, t.Null()], error ? { error } : {}));
export const MaxTokens = Type.Integer({ minimum: 1, maximum: MAX_TOKENS_LIMIT, description: "Clamped to the context left after the prompt" });

export const ChatCompletionsBody = t.Object({
  model: t.String({ minLength: 1, maxLength: 256 }),
  messages: t.Array(ChatMessageParam, { minItems: 1, maxItems: 100_000 }),
  max_tokens: Nullable(MaxTokens),
  max_completion_tokens: Nullable(MaxTokens),
  temperature: Nullable(t.Number({ minimum: 0, maximum: 2 })),
  top_p: Nullable(t.Number({ minimum: 0, maximum: 1 })),
  top_k: Nullable(Type.Integer({ minimum: 0 })),
  n: Nullable(Type.Integer({ minimum: 1, maximum: 1 }), "only n=1 is supported"),
  stop: t.Optional(Stop),
  seed: Nullable(Type.Integer()),
  stream: Nullable(t.Boolean()),
  stream_options: t.Optional(StreamOptions),
  logprobs: Nullable(t.Boolean()),
  top_logprobs: Nullable(Type.Integer({ minimum: 0, maximum: 20 })),
  user: t.Optional(t.String({ maxLength: 256 })),
  tools: t.Optional(t.Array(FunctionTool, { maxItems: 1024 })),
  tool_choice: t.Optional(ChatToolChoice),
  parallel_tool_calls: Nullable(t.Boolean()),
  response_format: Nullable(ResponseFormat),
  ...SamplingFields,
});
export type ChatCompletionsBody = typeof ChatCompletionsBody.static;

export const ChatCompletionsResponse = ChatCompletion;
export type ChatCompletionsResponse = typeof ChatCompletionsResponse.static;

export const OpenAIErrors = { 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 404: ErrorResponse, 413: ErrorResponse, 429: ErrorResponse, 500: ErrorResponse, 503: ErrorResponse };

export const chatCompletions = (s: InferenceService) =>
  new Elysia({ name: "function.chat-completions" }).post(
    "/v1/chat/completions",
    async ({ body, request }) => {
      const served = s.served();
      const call = s.call(request, body.user, "user");
      // A streamed answer is a Response of server-sent events; Elysia passes it through unvalidated.
      if (body.stream) return (await streamChatCompletion(served, body, call, s.fingerprint())) as unknown as ChatCompletionsResponse;
      return await createChatCompletion(served, body, call, s.fingerprint());
    },
    {
      transform: ({ body }) => refuseUnknownSamplers(body),
      body: ChatCompletionsBody,
      headers: OpenAIHeaders,
      response: { 200: ChatCompletionsResponse, ...OpenAIErrors },
      detail: {
        summary: "Create a chat completion (OpenAI Chat Completions API)",
        description: "With stream: true the answer is text/event-stream of chat.completion.chunk objects, then data: [DONE].",
        tags: ["openai"],
      },
    },
  );
