// The sampler chain: per-request sampling state over MLX logits, its options and their schemas.
export { type ChainOptions, SamplerChain, type TokenConstraint } from "./chain.ts";
export { GREEDY, MAX_PENALTY_LAST_N, NEUTRAL, type ResolvedSampling, resolveSampling, SamplingOptionError, type SamplingOptions } from "./options.ts";
export {
  ExtraSamplingFieldSchemas, JsonResponseFormat, nullable, SamplingFieldSchemas, SamplingFields, samplingOptionsOf, UNSUPPORTED_SAMPLING_FIELDS,
  unsupportedSamplingFields,
} from "./schema.ts";
export { type SamplingRequest, samplerForRequest } from "./for-request.ts";
export { logprobOf, MAX_TOP_LOGPROBS, topLogprobs } from "./logprobs.ts";
