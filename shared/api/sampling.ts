// Sampling and structured output as both APIs take them: the sampler options a body sets, the
// checks a schema cannot make (token ids against the vocabulary, JSON Schemas the constraint
// supports), and sampler fields other servers take that this one does not, each a 400 naming
// the field before any generation starts.
import { resolveSampling, SamplingOptionError, type SamplingOptions } from "../engine/sampling/options.ts";
import { type JsonResponseFormat, samplingOptionsOf, unsupportedSamplingFields } from "../engine/sampling/schema.ts";
import type { JsonFormat } from "../engine/structured/constraint.ts";
import { checkSchema, SchemaError } from "../engine/structured/schema.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { invalid } from "./errors.ts";
import { type Conversation, forcedToolFormat, type ToolDefinition } from "./prompt.ts";

/**
 * A function's `transform` hook (it sees the body before unknown fields are dropped): a sampler
 * field this server does not implement is refused rather than ignored.
 * @example new Elysia().post("/v1/x", handler, { body, transform: ({ body }) => refuseUnknownSamplers(body) })
 */
export function refuseUnknownSamplers(body: unknown, allowed: readonly string[] = []): void {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return;
  const field = unsupportedSamplingFields(body as Record<string, unknown>).find((f) => !allowed.includes(f));
  if (field) throw invalid(field, "this sampler is not supported here; supported: temperature, top_k, top_p, min_p, typical_p, repetition/frequency/presence penalties, penalty_last_n, logit_bias, dynatemp_range, dynatemp_exponent, mirostat 2, seed");
}

/** The body's sampler options, checked against the served vocabulary (a 400 naming the field). */
export function samplingOf(body: Record<string, unknown>, tokenizer: Tokenizer): SamplingOptions {
  const options = samplingOptionsOf(body);
  try {
    resolveSampling(options, tokenizer.vocabSize);
  } catch (e) {
    if (e instanceof SamplingOptionError) throw invalid(e.field, e.message.slice(e.field.length + 2));
    throw e;
  }
  return options;
}

/** A JSON Schema the output must follow, or a 400 at `field` listing unsupported keywords and invalid parts. */
export function schemaFormat(schema: unknown, field: string, suffix?: string): JsonFormat {
  checkedSchema(schema, field);
  return { type: "json_schema", schema, ...(suffix ? { suffix } : {}) };
}

// The schemas of tools a forced call may use, each checked at its own field.
function checkToolSchemas(tools: readonly ToolDefinition[]): void {
  tools.forEach((t, i) => checkedSchema(t.parameters, t.field ?? `tools.${i}`));
}

function checkedSchema(schema: unknown, field: string): void {
  const { unsupported, invalid: bad } = checkSchema(schema);
  if (unsupported.length || bad.length) throw invalid(field, new SchemaError(unsupported, bad).message);
}

/** OpenAI's response_format as an output constraint (null for text). */
export function responseFormat(rf: JsonResponseFormat | null | undefined): JsonFormat | null {
  if (!rf || rf.type === "text") return null;
  if (rf.type === "json_object") return { type: "json_object" };
  // No schema: any JSON value, as the empty schema allows.
  return schemaFormat(rf.json_schema.schema ?? {}, "response_format.json_schema.schema");
}

/** What a forced tool call (tool_choice any/required or a named tool) must be, its tools' schemas checked; null when none is forced. */
export function toolCallFormat(conv: Conversation): JsonFormat | null {
  const format = forcedToolFormat(conv);
  if (!format) return null;
  const choice = conv.toolChoice;
  checkToolSchemas(choice.kind === "named" ? conv.tools.filter((t) => t.name === choice.name) : conv.tools);
  return format;
}
