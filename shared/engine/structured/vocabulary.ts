// The vocabulary as the token mask needs it: each token's bytes, the text tokens sorted by
// bytes with the prefix each shares with the one before (so a mask walk steps every shared
// prefix once, like a trie walk), and the tokens that are plain string content (allowed as a
// block anywhere inside an unbounded JSON string). Built once per tokenizer and vocabulary size.
import { decoderKindOf, TokenBytes } from "../../tokenizer/token-bytes.ts";
import type { Tokenizer } from "../../tokenizer/tokenizer.ts";
import { utf8Lead } from "./recognizer.ts";

const utf8 = new TextEncoder();

/** Text tokens in byte order; `shared[i]` is how many leading bytes token i has in common with token i - 1. */
export type SortedTokens = { ids: Int32Array; bytes: Uint8Array[]; shared: Int32Array };

export class TokenVocabulary {
  /** Bytes of each id; null for ids that never stand for text (special tokens, padding). */
  readonly bytes: (Uint8Array | null)[];
  readonly eos: readonly number[];
  readonly all: SortedTokens;
  /** Tokens whose bytes are whole UTF-8 characters with no quote, backslash or control byte. */
  readonly plain: Int32Array;
  /** How many characters each plain token holds (same order as `plain`). */
  readonly plainChars: Int32Array;
  /** 1 at every plain token, 0 elsewhere (size entries). */
  readonly plainMask: Uint8Array;
  /** The most characters a plain token holds. */
  readonly maxPlainChars: number;
  /** Every other text token. */
  readonly rest: SortedTokens;

  /** The token whose bytes are exactly byte b (-1 if none). */
  readonly byteToken = new Int32Array(256).fill(-1);

  readonly #spelled = new Map<string, Int32Array | null>();
  readonly #encode: ((text: string) => number[]) | null;

  /**
   * @param size the model's vocabulary (logits width), which may exceed the tokenizer's
   * @param bytesOf the bytes token `id` decodes to
   * @param encode the tokenizer's encoding of plain text, to spell a completion in few tokens
   */
  constructor(readonly size: number, bytesOf: (id: number) => Uint8Array | null, eos: readonly number[], encode?: (text: string) => number[]) {
    this.#encode = encode ?? null;
    this.bytes = Array.from({ length: size }, (_, id) => {
      const b = bytesOf(id);
      return b && b.length ? b : null;
    });
    this.eos = eos.filter((id) => id < size);
    for (let id = size - 1; id >= 0; id--) {
      const b = this.bytes[id];
      if (b && b.length === 1 && !this.eos.includes(id)) this.byteToken[b[0]] = id;
    }
    const text: number[] = [];
    for (let id = 0; id < size; id++) if (this.bytes[id] && !this.eos.includes(id)) text.push(id);
    this.all = sortTokens(text, this.bytes);
    const plain: number[] = [];
    const chars: number[] = [];
    const rest: number[] = [];
    for (const id of text) {
      const n = plainChars(this.bytes[id]!);
      if (n < 0) rest.push(id);
      else {
        plain.push(id);
        chars.push(n);
      }
    }
    this.plain = Int32Array.from(plain);
    this.plainChars = Int32Array.from(chars);
    this.maxPlainChars = chars.reduce((a, b) => Math.max(a, b), 0);
    this.plainMask = new Uint8Array(size);
    for (let i = 0; i < plain.length; i++) this.plainMask[plain[i]] = 1;
    this.rest = sortTokens(rest, this.bytes);
  }

  /**
   * Text tokens that spell `text` exactly: the tokenizer's encoding when its tokens' bytes are
   * those of `text`, else one token per byte; null when neither exists. Cached.
   * @example vocabulary.spell('"}') // e.g. Int32Array [1372]
   */
  spell(text: string): Int32Array | null {
    let ids = this.#spelled.get(text);
    if (ids === undefined) {
      const bytes = utf8.encode(text);
      ids = this.#encode ? this.#checked(this.#encode(text), bytes) : null;
      if (!ids) {
        const single = Int32Array.from(bytes, (b) => this.byteToken[b]);
        ids = single.includes(-1) ? null : single;
      }
      if (this.#spelled.size > 50_000) this.#spelled.clear();
      this.#spelled.set(text, ids);
    }
    return ids;
  }

  // The encoding, if its tokens are text tokens whose bytes, one after the other, are `bytes`.
  #checked(ids: number[], bytes: Uint8Array): Int32Array | null {
    let at = 0;
    for (const id of ids) {
      const b = id >= 0 && id < this.size && !this.eos.includes(id) ? this.bytes[id] : null;
      if (!b || at + b.length > bytes.length) return null;
      for (let i = 0; i < b.length; i++) if (b[i] !== bytes[at + i]) return null;
      at += b.length;
    }
    return at === bytes.length ? Int32Array.from(ids) : null;
  }

  static #cache = new WeakMap<Tokenizer, Map<number, TokenVocabulary>>();

  /** The vocabulary of `tokenizer` over `size` ids (cached). Special tokens are never text. */
  static of(tokenizer: Tokenizer, size = tokenizer.vocabSize): TokenVocabulary {
    let bySize = TokenVocabulary.#cache.get(tokenizer);
    if (!bySize) TokenVocabulary.#cache.set(tokenizer, (bySize = new Map()));
    let v = bySize.get(size);
    if (!v) {
      const bytesOf = tokenBytesOf(tokenizer);
      v = new TokenVocabulary(size, (id) => (id < tokenizer.vocabSize && !tokenizer.isSpecial(id) ? bytesOf(id) : null), tokenizer.eosIds, (text) => tokenizer.encode(text));
      bySize.set(size, v);
    }
    return v;
  }
}

function sortTokens(ids: number[], bytes: (Uint8Array | null)[]): SortedTokens {
  const sorted = [...ids].sort((a, b) => compareBytes(bytes[a]!, bytes[b]!));
  const list = sorted.map((id) => bytes[id]!);
  const shared = new Int32Array(sorted.length);
  for (let i = 1; i < list.length; i++) {
    const a = list[i - 1], b = list[i];
    let n = 0;
    while (n < a.length && n < b.length && a[n] === b[n]) n++;
    shared[i] = n;
  }
  return { ids: Int32Array.from(sorted), bytes: list, shared };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

// Plain string content (the string recognizer's state is the same before and after these bytes):
// how many characters it holds, or -1 when it is not plain.
function plainChars(bytes: Uint8Array): number {
  let need = 0;
  let chars = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (need > 0) {
      // Only the simple continuation range: lead bytes with a narrower one are not plain.
      if (b < 0x80 || b > 0xbf) return -1;
      need--;
      continue;
    }
    if (b === 0x22 || b === 0x5c || b < 0x20) return -1;
    chars++;
    if (b < 0x80) continue;
    const lead = utf8Lead(b);
    if (!lead || lead[1] !== 0) return -1;
    need = lead[0];
  }
  return need === 0 ? chars : -1;
}

const hasBytesOf = (t: Tokenizer): t is Tokenizer & { bytesOf(id: number): Uint8Array } =>
  typeof (t as { bytesOf?: unknown }).bytesOf === "function";

/**
 * How to get a token's bytes from `tokenizer`: its own `bytesOf` when it has one, else the
 * byte mapping its vocabulary shows (GPT-2 byte-level "Ġ", or SentencePiece "▁" with <0xNN>
 * byte fallback), checked against the tokenizer's own decode on a sample of tokens.
 */
export function tokenBytesOf(tokenizer: Tokenizer): (id: number) => Uint8Array {
  if (hasBytesOf(tokenizer)) return (id) => tokenizer.bytesOf(id);
  const byteLevel = tokenizer.tokenToId("Ġ") !== undefined || tokenizer.tokenToId("Ġthe") !== undefined;
  const decoder = byteLevel
    ? decoderKindOf({ type: "ByteLevel" })
    : decoderKindOf({ type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }] });
  const bytes = new TokenBytes(decoder, (id) => tokenizer.idToToken(id));
  // Check on tokens whose text needs no context: whole characters, no leading space to strip.
  const decodeUtf8 = new TextDecoder("utf-8", { fatal: true });
  let checked = 0;
  for (let id = 0; id < tokenizer.vocabSize && checked < 200; id += 97) {
    if (tokenizer.isSpecial(id) || tokenizer.idToToken(id) === undefined) continue;
    let text: string;
    try {
      const b = bytes.of(id);
      if (b[0] === 0x20) continue;
      text = decodeUtf8.decode(b);
    } catch {
      continue;
    }
    if (tokenizer.decode([id]) !== text) throw new Error(`cannot tell the bytes of the tokenizer's tokens (token ${id}: ${JSON.stringify(tokenizer.decode([id]))} vs ${JSON.stringify(text)})`);
    checked++;
  }
  return (id) => bytes.of(id);
}
