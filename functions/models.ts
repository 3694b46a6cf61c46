// GET /v1/models and GET /v1/models/{id}: the served model, in a shape both SDKs read (OpenAI's
// object/owned_by/created and Anthropic's type/display_name/created_at, has_more/first_id/last_id).
// Any id the aliases accept (e.g. claude-*) resolves to the served model under that id.
import { Type } from "@sinclair/typebox";
import { Elysia, t } from "elysia";
import { ErrorResponse as AnthropicError } from "../shared/api/anthropic-schema.ts";
import { ErrorResponse as OpenAIError } from "../shared/api/openai-schema.ts";
import { ApiError } from "../shared/api/errors.ts";
import type { InferenceService } from "../shared/api/service.ts";

export const ModelObject = t.Object({
  id: t.String(),
  object: t.Literal("model"),
  type: t.Literal("model"),
  created: Type.Integer(),
  created_at: t.String({ description: "RFC 3339" }),
  owned_by: t.String(),
  display_name: t.String(),
  context_length: Type.Integer(),
});
export type ModelObject = typeof ModelObject.static;

export const ModelList = t.Object({
  object: t.Literal("list"),
  data: t.Array(ModelObject),
  has_more: t.Boolean(),
  first_id: t.Union([t.String(), t.Null()]),
  last_id: t.Union([t.String(), t.Null()]),
});
export type ModelList = typeof ModelList.static;

// Anthropic's pagination parameters, accepted (there is one model).
export const ModelListQuery = t.Object({
  limit: t.Optional(t.String()),
  after_id: t.Optional(t.String()),
  before_id: t.Optional(t.String()),
});

const ModelError = t.Union([OpenAIError, AnthropicError]);

export type ModelsService = InferenceService & { startedAt: number };

export const models = (s: ModelsService) => {
  const describe = (id: string): ModelObject => {
    const served = s.served();
    return {
      id,
      object: "model",
      type: "model",
      created: Math.floor(s.startedAt / 1000),
      created_at: new Date(s.startedAt).toISOString(),
      owned_by: "semantic",
      display_name: served.model.id,
      context_length: served.model.contextLength,
    };
  };
  return new Elysia({ name: "function.models" })
    .get(
      "/v1/models",
      (): ModelList => {
        const id = s.served().model.id;
        return { object: "list", data: [describe(id)], has_more: false, first_id: id, last_id: id };
      },
      {
        query: ModelListQuery,
        response: { 200: ModelList, 401: ModelError, 503: ModelError },
        detail: { summary: "List the served model", tags: ["models"] },
      },
    )
    .get(
      "/v1/models/*",
      ({ params }): ModelObject => {
        // A wildcard, so ids with "/" (hub ids) work; the OpenAPI document names it {id}.
        const id = params["*"];
        if (!id || id.length > 256) throw new ApiError("invalid_request", "id: must be 1-256 characters", { param: "id" });
        s.served().aliases.resolve(id);
        return describe(id);
      },
      {
        response: { 200: ModelObject, 401: ModelError, 404: ModelError, 503: ModelError },
        detail: { summary: "Describe a model id (the served id or an alias)", tags: ["models"] },
      },
    );
};
