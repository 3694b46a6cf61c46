// The OpenAI Chat Completions and Completions wire types as TypeBox schemas. Unknown fields are
// accepted and dropped; fields we cannot honour are refused by the translation with a 400.
import { type Static, Type as t } from "@sinclair/typebox";
import { ExtraSamplingFieldSchemas, JsonResponseFormat, nullable, SamplingFieldSchemas } from "../engine/sampling/schema.ts";

export const TextPart = t.Object({ type: t.Literal("text"), text: t.String() });
export const ImagePart = t.Object({ type: t.Literal("image_url"), image_url: t.Unknown() });
export const AudioPart = t.Object({ type: t.Literal("input_audio"), input_audio: t.Unknown() });
export const FilePart = t.Object({ type: t.Literal("file"), file: t.Unknown() });
export const RefusalPart = t.Object({ type: t.Literal("refusal"), refusal: t.String() });

const TextContent = t.Union([t.String(), t.Array(TextPart)]);

export const ToolCallParam = t.Object({
  id: t.String({ minLength: 1, maxLength: 256 }),
  type: t.Literal("function"),
  function: t.Object({ name: t.String({ minLength: 1, maxLength: 128 }), arguments: t.String() }),
});
export type ToolCallParam = Static<typeof ToolCallParam>;

export const ChatMessageParam = t.Union([
  t.Object({ role: t.Literal("system"), content: TextContent, name: t.Optional(t.String()) }),
  t.Object({ role: t.Literal("developer"), content: TextContent, name: t.Optional(t.String()) }),
  t.Object({ role: t.Literal("user"), content: t.Union([t.String(), t.Array(t.Union([TextPart, ImagePart, AudioPart, FilePart]))]), name: t.Optional(t.String()) }),
  t.Object({
    role: t.Literal("assistant"),
    content: t.Optional(t.Union([t.String(), t.Array(t.Union([TextPart, RefusalPart])), t.Null()])),
    tool_calls: t.Optional(t.Array(ToolCallParam)),
    name: t.Optional(t.String()),
    refusal: t.Optional(t.Union([t.String(), t.Null()])),
  }),
  t.Object({ role: t.Literal("tool"), content: TextContent, tool_call_id: t.String({ minLength: 1, maxLength: 256 }) }),
]);
export type ChatMessageParam = Static<typeof ChatMessageParam>;

export const FunctionTool = t.Object({
  type: t.Literal("function"),
  function: t.Object({
    name: t.String({ pattern: "^[a-zA-Z0-9_-]{1,64}$", error: "must be 1-64 characters of a-z A-Z 0-9 _ -" }),
    description: t.Optional(t.String()),
    parameters: t.Optional(t.Record(t.String(), t.Unknown())),
    strict: t.Optional(t.Union([t.Boolean(), t.Null()])),
  }),
});
export type FunctionTool = Static<typeof FunctionTool>;

export const ChatToolChoice = t.Union([
  t.Literal("none"),
  t.Literal("auto"),
  t.Literal("required"),
  t.Object({ type: t.Literal("function"), function: t.Object({ name: t.String({ minLength: 1 }) }) }),
]);
export type ChatToolChoice = Static<typeof ChatToolChoice>;

export const Stop = t.Union([t.String({ minLength: 1 }), t.Array(t.String({ minLength: 1 }), { maxItems: 4 }), t.Null()]);

export const StreamOptions = t.Union([t.Object({ include_usage: t.Optional(t.Boolean()) }), t.Null()]);

/**
 * The sampler fields beyond temperature, top_p, top_k and seed: OpenAI's penalties and
 * logit_bias, and the extras vLLM and llama.cpp take at the top level (the SDKs' extra_body).
 */
export const SamplingFields = {
  ...nullable({
    frequency_penalty: SamplingFieldSchemas.frequency_penalty,
    presence_penalty: SamplingFieldSchemas.presence_penalty,
    logit_bias: SamplingFieldSchemas.logit_bias,
  }),
  ...nullable(ExtraSamplingFieldSchemas),
};

/** text, json_object, or json_schema {name, schema, strict}: the output is constrained to valid JSON (of the schema). */
export const ResponseFormat = JsonResponseFormat;
export type ResponseFormat = Static<typeof ResponseFormat>;

export const CompletionUsage = t.Object({
  prompt_tokens: t.Integer(),
  completion_tokens: t.Integer(),
  total_tokens: t.Integer(),
  prompt_tokens_details: t.Object({ cached_tokens: t.Integer() }),
});
export type CompletionUsage = Static<typeof CompletionUsage>;

export const FinishReason = t.Union([t.Literal("stop"), t.Literal("length"), t.Literal("tool_calls")]);
export type FinishReason = Static<typeof FinishReason>;

export const TokenLogprob = t.Object({
  token: t.String(),
  logprob: t.Number(),
  bytes: t.Union([t.Array(t.Integer()), t.Null()]),
  top_logprobs: t.Array(t.Object({ token: t.String(), logprob: t.Number(), bytes: t.Union([t.Array(t.Integer()), t.Null()]) })),
});

export const ChatCompletion = t.Object({
  id: t.String(),
  object: t.Literal("chat.completion"),
  created: t.Integer(),
  model: t.String(),
  system_fingerprint: t.String(),
  choices: t.Array(
    t.Object({
      index: t.Integer(),
      message: t.Object({
        role: t.Literal("assistant"),
        content: t.Union([t.String(), t.Null()]),
        refusal: t.Null(),
        tool_calls: t.Optional(t.Array(ToolCallParam)),
      }),
      logprobs: t.Union([t.Object({ content: t.Array(TokenLogprob), refusal: t.Null() }), t.Null()]),
      finish_reason: FinishReason,
    }),
  ),
  usage: CompletionUsage,
});
export type ChatCompletion = Static<typeof ChatCompletion>;

/** The Completions API's logprobs: per token, its text, log-probability, the n most likely (and it) by text, and its offset in the text. */
export const LegacyLogprobs = t.Object({
  tokens: t.Array(t.String()),
  token_logprobs: t.Array(t.Number()),
  top_logprobs: t.Array(t.Record(t.String(), t.Number())),
  text_offset: t.Array(t.Integer()),
});
export type LegacyLogprobs = Static<typeof LegacyLogprobs>;

export const TextCompletion = t.Object({
  id: t.String(),
  object: t.Literal("text_completion"),
  created: t.Integer(),
  model: t.String(),
  system_fingerprint: t.String(),
  choices: t.Array(t.Object({ text: t.String(), index: t.Integer(), logprobs: t.Union([LegacyLogprobs, t.Null()]), finish_reason: FinishReason })),
  usage: CompletionUsage,
});
export type TextCompletion = Static<typeof TextCompletion>;

export const ErrorResponse = t.Object({
  error: t.Object({
    message: t.String(),
    type: t.String(),
    param: t.Union([t.String(), t.Null()]),
    code: t.Union([t.String(), t.Null()]),
  }),
});
export type ErrorResponse = Static<typeof ErrorResponse>;

export const OpenAIHeaders = t.Object({
  authorization: t.Optional(t.String()),
  "x-session-id": t.Optional(t.String({ description: "Selects the agent whose cache this turn continues (bound to the caller's key)" })),
});
