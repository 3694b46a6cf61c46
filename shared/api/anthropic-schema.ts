// The Anthropic Messages API's wire types as TypeBox schemas, shared by /v1/messages and
// /v1/messages/count_tokens. Unknown fields are accepted and dropped (clients send many);
// fields whose meaning we cannot honour are refused by the translation with a clear 400.
import { type Static, Type as t } from "@sinclair/typebox";
import { ExtraSamplingFieldSchemas, SamplingFieldSchemas } from "../engine/sampling/schema.ts";

const Id = t.String({ minLength: 1, maxLength: 256 });

/** A prompt-cache breakpoint: the prefix through this block is kept cached for `ttl` ("5m" default, or "1h"). */
export const CacheControl = t.Optional(t.Object({ type: t.String(), ttl: t.Optional(t.String()) }));
const cache_control = CacheControl;

export const TextBlock = t.Object({ type: t.Literal("text"), text: t.String(), cache_control });
export const ImageBlock = t.Object({ type: t.Literal("image"), source: t.Unknown(), cache_control });
export const DocumentBlock = t.Object({ type: t.Literal("document"), source: t.Unknown(), cache_control });
export const ToolUseBlock = t.Object({ type: t.Literal("tool_use"), id: Id, name: Id, input: t.Record(t.String(), t.Unknown()), cache_control });
export const ToolResultBlock = t.Object({
  type: t.Literal("tool_result"),
  tool_use_id: Id,
  content: t.Optional(t.Union([t.String(), t.Array(t.Union([TextBlock, ImageBlock, DocumentBlock]))])),
  is_error: t.Optional(t.Boolean()),
  cache_control,
});
export const ThinkingBlock = t.Object({ type: t.Literal("thinking"), thinking: t.String(), signature: t.Optional(t.String()) });
export const RedactedThinkingBlock = t.Object({ type: t.Literal("redacted_thinking"), data: t.String() });

export const ContentBlockParam = t.Union([TextBlock, ImageBlock, DocumentBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, RedactedThinkingBlock]);
export type ContentBlockParam = Static<typeof ContentBlockParam>;

export const MessageParam = t.Object({
  role: t.Union([t.Literal("user"), t.Literal("assistant"), t.Literal("system")]),
  content: t.Union([t.String(), t.Array(ContentBlockParam)]),
});
export type MessageParam = Static<typeof MessageParam>;

export const SystemParam = t.Union([t.String(), t.Array(TextBlock)]);
export type SystemParam = Static<typeof SystemParam>;

export const ToolParam = t.Object({
  name: t.String({ minLength: 1, maxLength: 128 }),
  description: t.Optional(t.String()),
  input_schema: t.Optional(t.Record(t.String(), t.Unknown())),
  /** Absent or "custom" for client tools; Anthropic's server tools (web_search_…, bash_…) are skipped. */
  type: t.Optional(t.String()),
  cache_control,
});
export type ToolParam = Static<typeof ToolParam>;

const Parallel = { disable_parallel_tool_use: t.Optional(t.Boolean()) };
export const ToolChoiceParam = t.Union([
  t.Object({ type: t.Literal("auto"), ...Parallel }),
  t.Object({ type: t.Literal("any"), ...Parallel }),
  t.Object({ type: t.Literal("tool"), name: t.String({ minLength: 1 }), ...Parallel }),
  t.Object({ type: t.Literal("none") }),
]);
export type ToolChoiceParam = Static<typeof ToolChoiceParam>;

/** The fields both /v1/messages and count_tokens read to build the prompt. */
export const PromptFields = {
  model: t.String({ minLength: 1, maxLength: 256 }),
  messages: t.Array(MessageParam, { minItems: 1, maxItems: 100_000 }),
  system: t.Optional(SystemParam),
  tools: t.Optional(t.Array(ToolParam, { maxItems: 1024 })),
  tool_choice: t.Optional(ToolChoiceParam),
};
export type PromptInput = {
  model: string;
  messages: MessageParam[];
  system?: SystemParam;
  tools?: ToolParam[];
  tool_choice?: ToolChoiceParam;
};

/** Sampler fields beyond Anthropic's temperature, top_p and top_k, as vLLM and llama.cpp take them at the top level. */
export const SamplingFields = { ...ExtraSamplingFieldSchemas, seed: SamplingFieldSchemas.seed };

export const Usage = t.Object({
  /** Prompt tokens prefilled: excludes cache reads (Claude Code adds all three). */
  input_tokens: t.Integer(),
  output_tokens: t.Integer(),
  cache_creation_input_tokens: t.Integer(),
  cache_read_input_tokens: t.Integer(),
});
export type Usage = Static<typeof Usage>;

export const StopReason = t.Union([
  t.Literal("end_turn"),
  t.Literal("max_tokens"),
  t.Literal("stop_sequence"),
  t.Literal("tool_use"),
  t.Literal("model_context_window_exceeded"),
]);
export type StopReason = Static<typeof StopReason>;

export const ResponseTextBlock = t.Object({ type: t.Literal("text"), text: t.String() });
export const ResponseToolUseBlock = t.Object({ type: t.Literal("tool_use"), id: t.String(), name: t.String(), input: t.Record(t.String(), t.Unknown()) });

export const Message = t.Object({
  id: t.String(),
  type: t.Literal("message"),
  role: t.Literal("assistant"),
  model: t.String(),
  content: t.Array(t.Union([ResponseTextBlock, ResponseToolUseBlock])),
  stop_reason: t.Union([StopReason, t.Null()]),
  stop_sequence: t.Union([t.String(), t.Null()]),
  usage: Usage,
});
export type Message = Static<typeof Message>;

export const ErrorResponse = t.Object({
  type: t.Literal("error"),
  error: t.Object({ type: t.String(), message: t.String() }),
  request_id: t.Optional(t.String()),
});
export type ErrorResponse = Static<typeof ErrorResponse>;

/** Headers Anthropic clients send; all optional, unknown beta values ignored. */
export const AnthropicHeaders = t.Object({
  "anthropic-version": t.Optional(t.String({ maxLength: 64 })),
  "anthropic-beta": t.Optional(t.String({ maxLength: 4096 })),
  "x-api-key": t.Optional(t.String()),
  authorization: t.Optional(t.String()),
  "x-claude-code-session-id": t.Optional(t.String({ description: "Selects the agent whose cache this turn continues (bound to the caller's key)" })),
  "x-session-id": t.Optional(t.String()),
});

/** Claude Code sends `?beta=true`; any query is accepted. */
export const BetaQuery = t.Object({ beta: t.Optional(t.String()) });
