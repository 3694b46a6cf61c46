// POST /v1/messages/count_tokens: the number of prompt tokens /v1/messages would process for
// the same body (same template, tools and attribution stripping), so clients compact on time.
import { Type } from "@sinclair/typebox";
import { Elysia, t } from "elysia";
import { anthropicPrompt } from "../shared/api/anthropic.ts";
import { AnthropicHeaders, BetaQuery, PromptFields } from "../shared/api/anthropic-schema.ts";
import type { InferenceService } from "../shared/api/service.ts";
import { MessagesErrors } from "./messages.ts";

export const CountTokensBody = t.Object({ ...PromptFields, thinking: t.Optional(t.Unknown()) });
export type CountTokensBody = typeof CountTokensBody.static;

export const CountTokensResponse = t.Object({ input_tokens: Type.Integer({ minimum: 0 }) });
export type CountTokensResponse = typeof CountTokensResponse.static;

export const countTokens = (s: InferenceService) =>
  new Elysia({ name: "function.count-tokens" }).post(
    "/v1/messages/count_tokens",
    ({ body }): CountTokensResponse => ({ input_tokens: anthropicPrompt(s.served(), body).prompt.ids.length }),
    {
      body: CountTokensBody,
      headers: AnthropicHeaders,
      query: BetaQuery,
      response: { 200: CountTokensResponse, ...MessagesErrors },
      detail: { summary: "Count the prompt tokens of a message request", tags: ["anthropic"] },
    },
  );
