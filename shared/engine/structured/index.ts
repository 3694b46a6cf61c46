// Structured output: JSON Schema (or any JSON object) enforced token by token.
export { type JsonFormat, ConstraintError, createJsonConstraint, JsonConstraint, JsonGrammar } from "./constraint.ts";
export { checkSchema, compileSchema, SchemaError, validateSchemaSupport } from "./schema.ts";
export { TokenVocabulary, tokenBytesOf } from "./vocabulary.ts";
