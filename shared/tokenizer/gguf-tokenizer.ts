// A GGUF file's tokenizer metadata, rebuilt as the tokenizer.json Hugging Face would use
// for the same model, so GGUF and MLX-format models share one tokenizer implementation.
import { getArray, getBoolean, getNumber, getString, type GgufHeader } from "../models/gguf.ts";
import { ggufPreTokenizer } from "./gguf-pre-tokenizers.ts";
import { HfTokenizer, type TokenizerJson, type TokenizerSettings } from "./hf-tokenizer.ts";
import { spmMerges } from "./spm-merges.ts";
import { TokenizerError } from "./tokenizer.ts";

// llama.cpp's llama_token_type values (tokenizer.ggml.token_type).
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;

function addedTokens(tokens: string[], types: number[]): NonNullable<TokenizerJson["added_tokens"]> {
  const added: NonNullable<TokenizerJson["added_tokens"]> = [];
  types.forEach((type, id) => {
    if (type === TOKEN_CONTROL || type === TOKEN_UNKNOWN || type === TOKEN_USER_DEFINED) {
      // Control tokens are special (matched only when asked); user-defined ones always match.
      added.push({ id, content: tokens[id]!, special: type !== TOKEN_USER_DEFINED, normalized: false });
    }
  });
  return added;
}

function vocabOf(tokens: string[]): Record<string, number> {
  // No prototype: a token named "__proto__" must stay an ordinary key.
  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((token, id) => {
    vocab[token] = id; // a duplicated token encodes as its last id, as in llama.cpp and HF
  });
  return vocab;
}

function byteLevelJson(header: GgufHeader, tokens: string[], added: TokenizerJson["added_tokens"]): TokenizerJson {
  const preName = getString(header, "tokenizer.ggml.pre", "default");
  const pre = ggufPreTokenizer(preName);
  if (!pre) throw new TokenizerError(`GGUF pre-tokenizer "${preName}" is not supported`);
  return {
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        ...pre.regexes.map((regex) => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false })),
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      vocab: vocabOf(tokens),
      merges: getArray(header, "tokenizer.ggml.merges", "string"),
      ignore_merges: pre.ignoreMerges,
      byte_fallback: false,
    },
  };
}

// As transformers' GGUF converter for "llama" vocabularies (Llama 2, Gemma, Mistral v1):
// spaces become "▁", optionally one is prepended, unknown bytes fall back to <0xNN>.
function sentencePieceJson(header: GgufHeader, tokens: string[], added: TokenizerJson["added_tokens"]): TokenizerJson {
  const addSpacePrefix = getBoolean(header, "tokenizer.ggml.add_space_prefix", true);
  const merges = header.metadata.has("tokenizer.ggml.merges")
    ? getArray(header, "tokenizer.ggml.merges", "string")
    : spmMerges(tokens, getArray(header, "tokenizer.ggml.scores", "number"));
  const unkId = getNumber(header, "tokenizer.ggml.unknown_token_id", -1);
  const replace = { type: "Replace", pattern: { String: " " }, content: "▁" };
  return {
    added_tokens: added,
    normalizer: addSpacePrefix ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, replace] } : replace,
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        ...(addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: "BPE",
      vocab: vocabOf(tokens),
      merges,
      unk_token: tokens[unkId],
      fuse_unk: true,
      byte_fallback: true,
    },
  };
}

/**
 * The tokenizer.json and settings equivalent to a GGUF file's tokenizer metadata
 * ("gpt2" byte-level BPE or "llama" SentencePiece BPE).
 */
export function ggufTokenizerParts(header: GgufHeader): { json: TokenizerJson; settings: TokenizerSettings } {
  const model = getString(header, "tokenizer.ggml.model");
  const tokens = getArray(header, "tokenizer.ggml.tokens", "string");
  const types = header.metadata.has("tokenizer.ggml.token_type")
    ? getArray(header, "tokenizer.ggml.token_type", "number")
    : [];
  const added = addedTokens(tokens, types);
  let json: TokenizerJson;
  if (model === "gpt2") json = byteLevelJson(header, tokens, added);
  else if (model === "llama") json = sentencePieceJson(header, tokens, added);
  else throw new TokenizerError(`GGUF tokenizer model "${model}" is not supported (gpt2 and llama are)`);

  const tokenAt = (key: string) => {
    const id = getNumber(header, key, -1);
    return id >= 0 && id < tokens.length ? tokens[id] : undefined;
  };
  const settings: TokenizerSettings = {
    tokens,
    bosToken: tokenAt("tokenizer.ggml.bos_token_id"),
    eosToken: tokenAt("tokenizer.ggml.eos_token_id"),
    chatTemplate: header.metadata.has("tokenizer.chat_template") ? getString(header, "tokenizer.chat_template") : undefined,
    // llama.cpp's default: SentencePiece vocabularies add bos, BPE ones do not.
    addBos: getBoolean(header, "tokenizer.ggml.add_bos_token", model === "llama"),
  };
  return { json, settings };
}

/** Builds the model's tokenizer from GGUF metadata. */
export function tokenizerFromGguf(header: GgufHeader): HfTokenizer {
  const { json, settings } = ggufTokenizerParts(header);
  return new HfTokenizer(json, settings);
}
