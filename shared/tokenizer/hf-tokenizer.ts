// Runs a Hugging Face tokenizer.json. @huggingface/tokenizers (HF's own pure-JS port, runs in
// Bun) gives us the normalizer and pre-tokenizer, including its translation of Oniguruma
// regexes to JavaScript; the BPE merge loop (bpe-model.ts), the added-token split (so
// `specials` can be off) and byte-based decoding/streaming are ours: the library is too slow
// on unseen text, has no such switch, and decodes strings rather than bytes.
import { Tokenizer as LibTokenizer } from "@huggingface/tokenizers";
import { AddedTokenSplitter, type AddedToken } from "./added-tokens.ts";
import { BpeModel, type BpeConfig } from "./bpe-model.ts";
import { createByteStreamDecoder, decodeBytes, type ByteSource } from "./stream-decoder.ts";
import { decoderKindOf, TokenBytes } from "./token-bytes.ts";
import {
  TokenizerError,
  type DecodeOptions,
  type EncodeOptions,
  type StreamDecoder,
  type Tokenizer,
} from "./tokenizer.ts";

/** The parts of a tokenizer.json we read ourselves; the library reads the rest. */
export interface TokenizerJson {
  added_tokens?: {
    id: number;
    content: string;
    special?: boolean;
    lstrip?: boolean;
    rstrip?: boolean;
    single_word?: boolean;
    normalized?: boolean;
  }[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  post_processor?: unknown;
  decoder?: unknown;
  model: BpeConfig;
}

export interface TokenizerSettings {
  /** Every id's token (a GGUF list); needed when a token appears twice and the vocab keeps one id. */
  tokens?: readonly string[];
  bosToken?: string;
  eosToken?: string;
  chatTemplate?: string;
  addBos?: boolean;
}

/** Tokens that end a turn in the chat formats we know (llama.cpp treats them as EOG too). */
const END_OF_TURN = [
  "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>",
  "<|end_of_text|>", "<EOT>", "<|return|>", "<|call|>", "<end_of_utterance>",
];

/** Sections shorter than this are encoded every time: cheap, and many. */
const SECTION_CACHE_MIN = 256;
/** The remembered sections' text in all, in characters (a few MB: dozens of long conversations). */
const SECTION_CACHE_CHARS = 4_000_000;

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly eosIds: readonly number[];
  readonly addBos: boolean;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly chatTemplate: string | undefined;

  readonly #normalizer: ((text: string) => string) | null;
  readonly #preTokenizer: ((text: string, options: { section_index: number }) => string[]) | null;
  readonly #bpe: BpeModel;
  readonly #raw: AddedTokenSplitter;
  readonly #normalized: AddedTokenSplitter;
  readonly #specialIds: Set<number>;
  readonly #addedIds = new Map<string, number>();
  readonly #tokens: string[];
  readonly #bytes: TokenBytes;
  readonly #sections = new Map<string, number[]>();
  #sectionChars = 0;

  constructor(json: TokenizerJson, settings: TokenizerSettings = {}) {
    let lib: LibTokenizer;
    try {
      // The library only builds the normalizer and pre-tokenizer; the model it gets is empty.
      const empty = { type: "BPE", vocab: {}, merges: [] };
      lib = new LibTokenizer({ ...json, added_tokens: [], model: empty, post_processor: null, decoder: null }, {});
    } catch (e) {
      throw new TokenizerError(`invalid tokenizer.json: ${(e as Error).message}`);
    }
    this.#normalizer = lib.normalizer;
    this.#preTokenizer = lib.pre_tokenizer;
    this.#bpe = new BpeModel(json.model);

    const added: AddedToken[] = (json.added_tokens ?? []).map((t) => ({
      id: t.id,
      content: t.content,
      special: t.special ?? false,
      lstrip: t.lstrip ?? false,
      rstrip: t.rstrip ?? false,
      singleWord: t.single_word ?? false,
      normalized: t.normalized ?? !(t.special ?? false),
    }));
    // As in HF: normalized added tokens are looked for after the normalizer has run.
    const normalizer = this.#normalizer;
    this.#raw = new AddedTokenSplitter(added.filter((t) => !(t.normalized && normalizer)));
    this.#normalized = new AddedTokenSplitter(
      normalizer ? added.filter((t) => t.normalized).map((t) => ({ ...t, content: normalizer(t.content) })) : [],
    );
    this.#specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));

    // Added tokens may lie beyond the model's vocabulary (Qwen's do): id -> token covers both.
    this.#tokens = settings.tokens ? [...settings.tokens] : [];
    if (!settings.tokens) for (const [token, id] of this.#bpe.vocab) this.#tokens[id] = token;
    for (const t of added) {
      this.#addedIds.set(t.content, t.id);
      this.#tokens[t.id] ??= t.content;
    }
    this.#bytes = new TokenBytes(decoderKindOf(json.decoder), (id) => this.idToToken(id));

    this.vocabSize = this.#tokens.length;
    this.bosToken = settings.bosToken;
    this.eosToken = settings.eosToken;
    this.bosId = settings.bosToken === undefined ? undefined : this.tokenToId(settings.bosToken);
    this.eosId = settings.eosToken === undefined ? undefined : this.tokenToId(settings.eosToken);
    this.addBos = (settings.addBos ?? false) && this.bosId !== undefined;
    this.chatTemplate = settings.chatTemplate;
    const endOfTurn = END_OF_TURN.map((t) => this.tokenToId(t)).filter((id) => id !== undefined && this.#specialIds.has(id));
    this.eosIds = [...new Set([...(this.eosId === undefined ? [] : [this.eosId]), ...(endOfTurn as number[])])];
  }

  /**
   * Text to ids, without bos/eos.
   * @example tok.encode("<|im_start|>user\nhi", { specials: true }) // [1, 4093, 198, 6004]
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const specials = opts.specials ?? false;
    const ids: number[] = [];
    this.#raw.split(text, specials).forEach((section, index) => {
      if (typeof section === "number") ids.push(section);
      else if (opts.remember === undefined || section.length < SECTION_CACHE_MIN) this.#encodeSection(section, index, specials, ids);
      else for (const id of this.#rememberedSection(opts.remember, section, index, specials)) ids.push(id);
    });
    return ids;
  }

  // A section's ids depend only on its text, on whether it comes first, and on `specials`.
  #rememberedSection(scope: string, section: string, index: number, specials: boolean): number[] {
    const key = `${scope}\0${index === 0 ? 0 : 1}${specials ? 1 : 0}${section}`;
    let ids = this.#sections.get(key);
    if (ids) this.#sections.delete(key); // re-inserted below: the map's order is its LRU order
    else {
      ids = [];
      this.#encodeSection(section, index, specials, ids);
      this.#sectionChars += key.length;
      for (const [old] of this.#sections) {
        if (this.#sectionChars <= SECTION_CACHE_CHARS) break;
        this.#sections.delete(old);
        this.#sectionChars -= old.length;
      }
    }
    this.#sections.set(key, ids);
    return ids;
  }

  #encodeSection(text: string, sectionIndex: number, specials: boolean, ids: number[]): void {
    const normalized = this.#normalizer ? this.#normalizer(text) : text;
    for (const piece of this.#normalized.split(normalized, specials)) {
      if (typeof piece === "number") {
        ids.push(piece);
        continue;
      }
      const words = this.#preTokenizer ? this.#preTokenizer(piece, { section_index: sectionIndex }) : [piece];
      for (const word of words) this.#bpe.encodeWord(word, ids);
    }
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    return decodeBytes(this.#byteSource(opts), ids);
  }

  createStreamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    return createByteStreamDecoder(this.#byteSource(opts));
  }

  #byteSource(opts: DecodeOptions): ByteSource {
    const decoder = this.#bytes.decoder;
    return {
      bytesOf: (id) => this.#bytes.of(id),
      stripLeadingSpace: decoder.kind === "sentencepiece" && decoder.stripLeadingSpace,
      skip: opts.skipSpecial ? (id) => this.#specialIds.has(id) : () => false,
    };
  }

  idToToken(id: number): string | undefined {
    return this.#tokens[id];
  }

  tokenToId(token: string): number | undefined {
    return this.#addedIds.get(token) ?? this.#bpe.vocab.get(token);
  }

  isSpecial(id: number): boolean {
    return this.#specialIds.has(id);
  }
}
