// POST /v1/messages (also ?beta=true, as Claude Code sends it): the Anthropic Messages API,
// streaming or not, with tool use (a forced tool_choice is constrained to a valid call) and the
// sampler chain's extra fields. Translation lives in shared/api/anthropic.ts.
import { Type } from "@sinclair/typebox";
import { Elysia, t } from "elysia";
import { createMessage, streamMessage } from "../shared/api/anthropic.ts";
import { AnthropicHeaders, BetaQuery, ErrorResponse, Message, PromptFields, SamplingFields } from "../shared/api/anthropic-schema.ts";
import { refuseUnknownSamplers } from "../shared/api/sampling.ts";
import type { InferenceService } from "../shared/api/service.ts";

/** Far above any context we serve; larger values are refused, smaller ones clamped to the room left. */
export const MAX_TOKENS_LIMIT = 1_048_576;

export const MessagesBody = t.Object({
  ...PromptFields,
  max_tokens: Type.Integer({ minimum: 1, maximum: MAX_TOKENS_LIMIT, description: "Clamped to the context left after the prompt" }),
  temperature: t.Optional(t.Number({ minimum: 0, maximum: 1 })),
  top_p: t.Optional(t.Number({ minimum: 0, maximum: 1 })),
  top_k: t.Optional(Type.Integer({ minimum: 0 })),
  stop_sequences: t.Optional(t.Array(t.String({ minLength: 1 }), { maxItems: 16 })),
  stream: t.Optional(t.Boolean()),
  metadata: t.Optional(t.Object({ user_id: t.Optional(t.Union([t.String(), t.Null()])) })),
  /** Accepted and ignored: the served models do not think in separate blocks. */
  thinking: t.Optional(t.Unknown()),
  ...SamplingFields,
});
export type MessagesBody = typeof MessagesBody.static;

export const MessagesResponse = Message;
export type MessagesResponse = typeof MessagesResponse.static;

export const MessagesErrors = {
  400: ErrorResponse,
  401: ErrorResponse,
  403: ErrorResponse,
  404: ErrorResponse,
  413: ErrorResponse,
  500: ErrorResponse,
  503: ErrorResponse,
  529: ErrorResponse,
};

export const messages = (s: InferenceService) =>
  new Elysia({ name: "function.messages" }).post(
    "/v1/messages",
    async ({ body, request }) => {
      const served = s.served();
      const call = s.call(request, body.metadata?.user_id, "metadata.user_id");
      // A streamed answer is a Response of server-sent events; Elysia passes it through unvalidated.
      if (body.stream) return (await streamMessage(served, body, call)) as unknown as MessagesResponse;
      return await createMessage(served, body, call);
    },
    {
      transform: ({ body }) => refuseUnknownSamplers(body),
      body: MessagesBody,
      headers: AnthropicHeaders,
      query: BetaQuery,
      response: { 200: MessagesResponse, ...MessagesErrors },
      detail: {
        summary: "Create a message (Anthropic Messages API)",
        description: "With stream: true the answer is text/event-stream: message_start, content_block_start/delta/stop, message_delta, message_stop, ping; error after the stream began.",
        tags: ["anthropic"],
      },
    },
  );
