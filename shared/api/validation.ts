// Schema failures explained the way a person fixes them: the dotted field and what it must be.
// TypeBox says "Expected union value" for any union; this walks into the variant the value
// was meant to be (by its "type" literal, else the closest match) to name the real problem.
import { Kind, type TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType } from "@sinclair/typebox/value";
import { ApiError } from "./errors.ts";

type Found = { path: string; message: string };

const depth = (path: string) => (path ? path.split("/").length - 1 : 0);

/** "/messages/0/content" -> "messages.0.content"; the root is "body". */
export function fieldName(path: string): string {
  const parts = path.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  return parts.length ? parts.join(".") : "body";
}

function describe(s: TSchema): string {
  if ("const" in s) return JSON.stringify(s.const);
  const kind = s[Kind] as string | undefined;
  const tag = literalOf(s, "type") ?? literalOf(s, "role");
  if (tag !== undefined) return `a ${JSON.stringify(tag)} object`;
  return (kind ?? String(s.type ?? "value")).toLowerCase();
}

function lower(message: string): string {
  if (message === "Expected required property") return "required";
  return message.charAt(0).toLowerCase() + message.slice(1);
}

function literalOf(s: TSchema, key: string): unknown {
  return s[Kind] === "Object" && s.properties?.[key] && "const" in s.properties[key] ? s.properties[key].const : undefined;
}

function kindMatches(s: TSchema, value: unknown): boolean {
  const type = s.type;
  if (value === null) return type === "null";
  if (Array.isArray(value)) return type === "array";
  if (typeof value === "number") return type === "number" || type === "integer";
  return typeof value === type;
}

/** The first meaningful problem with `value` against `schema`, or null when it conforms. */
export function firstProblem(schema: TSchema, value: unknown): Found | null {
  for (const e of Value.Errors(schema, value)) {
    // Extra properties are stripped by the framework before validation, never refused.
    if (e.type === ValueErrorType.ObjectAdditionalProperties) continue;
    const custom = (e.schema as { error?: unknown }).error;
    if (typeof custom === "string") return { path: e.path, message: custom };
    if (e.value === undefined) return { path: e.path, message: "required" };
    if (e.schema[Kind] === "Union" && Array.isArray(e.schema.anyOf)) return unionProblem(e.schema.anyOf, e.value, e.path);
    return { path: e.path, message: lower(e.message) };
  }
  return null;
}

function unionProblem(variants: TSchema[], value: unknown, path: string): Found | null {
  // Variants told apart by a literal "type" (content blocks) or "role" (chat messages).
  const key = ["type", "role"].find((k) => variants.every((v) => literalOf(v, k) !== undefined));
  if (key && value !== null && typeof value === "object" && !Array.isArray(value)) {
    const tags = variants.map((v) => literalOf(v, key));
    const tag = (value as Record<string, unknown>)[key];
    const i = tags.indexOf(tag);
    const expected = tags.map((t) => JSON.stringify(t)).join(", ");
    if (i < 0) {
      return {
        path: `${path}/${key}`,
        message: typeof tag === "string" ? `unknown ${key} ${JSON.stringify(tag)}; expected one of ${expected}` : `required; one of ${expected}`,
      };
    }
    const inner = firstProblem(variants[i], value);
    return inner && { path: path + inner.path, message: inner.message };
  }
  // A value of one JSON kind is judged by the variant of that kind (1e9 by the integer's bounds, not "or null").
  const sameKind = variants.filter((v) => kindMatches(v, value));
  if (sameKind.length === 1) {
    const inner = firstProblem(sameKind[0], value);
    return inner && { path: path + inner.path, message: inner.message };
  }
  let best: Found | null = null;
  for (const v of variants) {
    const inner = firstProblem(v, value);
    if (!inner) return null;
    if (!best || depth(inner.path) > depth(best.path)) best = inner;
  }
  if (best && depth(best.path) > 0) return { path: path + best.path, message: best.message };
  return { path, message: `expected ${[...new Set(variants.map(describe))].join(" or ")}` };
}

/**
 * An Elysia validation failure as a 400 naming the field.
 * @example explainValidation(bodySchema, { max_tokens: 0 }) // "max_tokens: expected integer to be greater or equal to 1"
 */
export function explainValidation(schema: TSchema | undefined, value: unknown, where = "body"): ApiError {
  const found = schema ? firstProblem(schema, value) : null;
  if (!found) return new ApiError("invalid_request", `${where}: does not match the schema`, { param: where });
  const field = where === "body" ? fieldName(found.path) : `${where}${found.path.replace(/\//g, ".")}`;
  return new ApiError("invalid_request", `${field}: ${found.message}`, { param: field });
}
