// The sampling fields as TypeBox schemas with their bounds, for the API contracts to spread into
// their request bodies (top-level fields, as vLLM and llama.cpp's server take them and the SDKs
// send them through extra_body), and the response_format shapes for structured output.
import { OptionalKind, type Static, type TNull, type TOptional, type TSchema, type TUnion, Type as t } from "@sinclair/typebox";
import { MAX_PENALTY_LAST_N, type SamplingOptions } from "./options.ts";

/** Each sampling field, optional, with bounds. Names and meanings as in options.ts. */
export const SamplingFieldSchemas = {
  temperature: t.Optional(t.Number({ minimum: 0, maximum: 2, description: "0 is greedy" })),
  top_k: t.Optional(t.Integer({ minimum: 0, description: "Keep the k most likely tokens; 0 disables" })),
  top_p: t.Optional(t.Number({ minimum: 0, maximum: 1, description: "Nucleus sampling; 1 disables" })),
  min_p: t.Optional(t.Number({ minimum: 0, maximum: 1, description: "Keep tokens with p >= min_p * p_max; 0 disables" })),
  typical_p: t.Optional(t.Number({ minimum: 0, maximum: 1, description: "Locally typical sampling; 1 disables" })),
  repetition_penalty: t.Optional(t.Number({ exclusiveMinimum: 0, maximum: 10, description: "Divides positive / multiplies negative logits of recent tokens; 1 disables" })),
  frequency_penalty: t.Optional(t.Number({ minimum: -2, maximum: 2 })),
  presence_penalty: t.Optional(t.Number({ minimum: -2, maximum: 2 })),
  penalty_last_n: t.Optional(t.Integer({ minimum: 0, maximum: MAX_PENALTY_LAST_N, description: "Recent tokens the penalties look at; 0 disables them" })),
  logit_bias: t.Optional(
    t.Record(t.String({ pattern: "^[0-9]+$" }), t.Number({ minimum: -100, maximum: 100 }), { description: "Token id -> bias added to its logit", additionalProperties: false }),
  ),
  dynatemp_range: t.Optional(t.Number({ minimum: 0, maximum: 2, description: "Dynamic temperature: T in [temperature - range, temperature + range] by entropy; 0 disables" })),
  dynatemp_exponent: t.Optional(t.Number({ minimum: 0, maximum: 10 })),
  mirostat: t.Optional(t.Union([t.Literal(0), t.Literal(2)], { description: "2: mirostat v2 (replaces top-k, top-p, min-p, typical-p); 1 is not supported" })),
  mirostat_tau: t.Optional(t.Number({ minimum: 0, maximum: 20, description: "Target surprise in bits" })),
  mirostat_eta: t.Optional(t.Number({ minimum: 0, maximum: 1, description: "Learning rate" })),
  seed: t.Optional(t.Integer({ minimum: -(2 ** 53) + 1, maximum: 2 ** 53 - 1 })),
};

/** Every sampling field as one object schema (all optional). */
export const SamplingFields = t.Object(SamplingFieldSchemas);
export type SamplingFields = Static<typeof SamplingFields>;

/**
 * The fields beyond what OpenAI's and Anthropic's own schemas name (their temperature, top_p,
 * top_k, seed and penalties keep the bounds each API documents), spread into a contract:
 * @example t.Object({ ...ChatCompletionsFields, ...ExtraSamplingFieldSchemas })
 */
export const ExtraSamplingFieldSchemas = {
  min_p: SamplingFieldSchemas.min_p,
  typical_p: SamplingFieldSchemas.typical_p,
  repetition_penalty: SamplingFieldSchemas.repetition_penalty,
  penalty_last_n: SamplingFieldSchemas.penalty_last_n,
  dynatemp_range: SamplingFieldSchemas.dynatemp_range,
  dynatemp_exponent: SamplingFieldSchemas.dynatemp_exponent,
  mirostat: SamplingFieldSchemas.mirostat,
  mirostat_tau: SamplingFieldSchemas.mirostat_tau,
  mirostat_eta: SamplingFieldSchemas.mirostat_eta,
};

/**
 * The same optional fields, each also taking null (OpenAI's and vLLM's contracts read null as absent).
 * @example t.Object({ ...nullable(ExtraSamplingFieldSchemas) })
 */
export function nullable<T extends Record<string, TOptional<TSchema>>>(fields: T): { [K in keyof T]: TOptional<TUnion<[T[K], TNull]>> } {
  const out: Record<string, TSchema> = {};
  for (const [k, schema] of Object.entries(fields)) {
    const { [OptionalKind]: _, ...required } = schema as TSchema & { [OptionalKind]?: string };
    out[k] = t.Optional(t.Union([required as TSchema, t.Null()]));
  }
  return out as { [K in keyof T]: TOptional<TUnion<[T[K], TNull]>> };
}

/**
 * The sampler options a request body sets: its sampling fields, absent and null ones left out.
 * @example samplingOptionsOf({ model: "m", temperature: 0.2, min_p: null }) // { temperature: 0.2 }
 */
export function samplingOptionsOf(body: Record<string, unknown>): SamplingOptions {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(SamplingFieldSchemas)) if (body[k] !== undefined && body[k] !== null) out[k] = body[k];
  return out as SamplingOptions;
}

/**
 * Sampler fields other servers accept that this chain does not implement: a request naming one
 * should get a 400 naming it rather than have it dropped.
 */
export const UNSUPPORTED_SAMPLING_FIELDS = [
  "tfs_z", "top_a", "top_n_sigma", "xtc_probability", "xtc_threshold", "dry_multiplier", "dry_base", "dry_allowed_length",
  "dry_penalty_last_n", "dry_sequence_breakers", "smoothing_factor", "smoothing_curve", "epsilon_cutoff", "eta_cutoff",
  "min_tokens", "length_penalty", "use_beam_search", "best_of", "guided_regex", "guided_grammar", "grammar", "json_schema",
] as const;

/** The unsupported sampler fields present in a request body. */
export function unsupportedSamplingFields(body: Record<string, unknown>): string[] {
  return UNSUPPORTED_SAMPLING_FIELDS.filter((f) => body[f] !== undefined && body[f] !== null);
}

/** OpenAI's response_format, as the structured-output constraint takes it. */
export const JsonResponseFormat = t.Union([
  t.Object({ type: t.Literal("text") }),
  t.Object({ type: t.Literal("json_object") }),
  t.Object({
    type: t.Literal("json_schema"),
    json_schema: t.Object({
      name: t.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9_-]+$" }),
      description: t.Optional(t.String()),
      schema: t.Optional(t.Record(t.String(), t.Unknown())),
      strict: t.Optional(t.Union([t.Boolean(), t.Null()])),
    }),
  }),
]);
export type JsonResponseFormat = Static<typeof JsonResponseFormat>;
