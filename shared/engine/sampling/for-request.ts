// The one call an engine makes per request: its sampler chain, with the prompt as the start of
// the penalty window and, for structured output, the JSON constraint bounded by max tokens.
import type { Tokenizer } from "../../tokenizer/tokenizer.ts";
import { createJsonConstraint, type JsonFormat } from "../structured/constraint.ts";
import { SamplerChain } from "./chain.ts";
import type { SamplingOptions } from "./options.ts";

export type SamplingRequest = {
  sampling: SamplingOptions;
  promptIds: readonly number[];
  maxTokens: number;
  /** Structured output: the completion must be this JSON (object, or value of a schema). */
  format?: JsonFormat | null;
};

/**
 * @example const sampler = samplerForRequest(req, model.vocabSize, tokenizer); // then per token: sample, item, accept
 * Throws SamplingOptionError or SchemaError (the API layer checks both first, for a 400).
 */
export function samplerForRequest(req: SamplingRequest, vocabSize: number, tokenizer: Tokenizer): SamplerChain {
  const constraint = req.format ? createJsonConstraint(tokenizer, vocabSize, req.format, { maxTokens: req.maxTokens }) : null;
  return new SamplerChain(req.sampling, vocabSize, { history: req.promptIds, constraint });
}
