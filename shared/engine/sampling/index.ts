// The sampler chain: per-request sampling state over MLX logits, its options and their schemas.
export { type ChainOptions, SamplerChain, type TokenConstraint } from "./chain.ts";
export { fromSamplingParams, MAX_PENALTY_LAST_N, NEUTRAL, type ResolvedSampling, resolveSampling, SamplingOptionError, type SamplingOptions } from "./options.ts";
export * as stages from "./stages.ts";
export {
  ExtraSamplingFieldSchemas, JsonResponseFormat, SamplingFieldSchemas, SamplingFields, UNSUPPORTED_SAMPLING_FIELDS, unsupportedSamplingFields,
} from "./schema.ts";
export { type SamplingRequest, samplerForRequest } from "./for-request.ts";
