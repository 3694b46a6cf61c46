// Decoding works on bytes, not strings, so a streamed character split across tokens can
// wait for its last byte. This maps each token to its bytes for the two decoder families
// LLMs use: GPT-2 byte-level, and SentencePiece ("▁" for space, <0xNN> byte fallback).
import { TokenizerError } from "./tokenizer.ts";

export type DecoderKind =
  | { kind: "byte-level" }
  | { kind: "sentencepiece"; replacement: string; byteFallback: boolean; stripLeadingSpace: boolean };

const utf8 = new TextEncoder();
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

type Json = Record<string, unknown> | null | undefined;

/** Which byte mapping a tokenizer.json `decoder` implies. */
export function decoderKindOf(decoder: unknown): DecoderKind {
  const config = decoder as Json;
  const parts = (config?.type === "Sequence" ? (config.decoders as Json[]) : [config]) ?? [];
  const has = (type: string) => parts.some((p) => p?.type === type);
  if (has("ByteLevel")) return { kind: "byte-level" };
  const metaspace = parts.find((p) => p?.type === "Metaspace");
  if (metaspace) {
    const scheme = metaspace.prepend_scheme ?? (metaspace.add_prefix_space === false ? "never" : "always");
    return {
      kind: "sentencepiece",
      replacement: (metaspace.replacement as string | undefined) ?? "▁",
      byteFallback: has("ByteFallback"),
      stripLeadingSpace: scheme !== "never",
    };
  }
  const replace = parts.find((p) => p?.type === "Replace" && p.content === " ");
  const pattern = (replace?.pattern as Json)?.String;
  if (typeof pattern === "string") {
    return {
      kind: "sentencepiece",
      replacement: pattern,
      byteFallback: has("ByteFallback"),
      stripLeadingSpace: parts.some((p) => p?.type === "Strip" && p.content === " " && Number(p.start) > 0),
    };
  }
  throw new TokenizerError(`unsupported tokenizer.json decoder ${JSON.stringify(config?.type ?? null)}`);
}

/** GPT-2's reversible byte <-> printable-character map (bytes that print stay themselves). */
function byteLevelCharToByte(): Map<number, number> {
  const map = new Map<number, number>();
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(printable ? b : 256 + shifted++, b);
  }
  return map;
}

export class TokenBytes {
  readonly #cache: (Uint8Array | undefined)[] = [];
  readonly #charToByte = byteLevelCharToByte();
  readonly #tokenOf: (id: number) => string | undefined;

  constructor(
    readonly decoder: DecoderKind,
    tokenOf: (id: number) => string | undefined,
  ) {
    this.#tokenOf = tokenOf;
  }

  /** The bytes token `id` stands for; throws on an id outside the vocabulary. */
  of(id: number): Uint8Array {
    const cached = this.#cache[id];
    if (cached) return cached;
    const token = Number.isInteger(id) ? this.#tokenOf(id) : undefined;
    if (token === undefined) throw new RangeError(`token id ${id} is not in the vocabulary`);
    const bytes = this.decoder.kind === "byte-level" ? this.#byteLevel(token) : this.#sentencePiece(token);
    this.#cache[id] = bytes;
    return bytes;
  }

  // As HF's ByteLevel decoder: a token with any char outside the map (an added token
  // such as "<|im start|>") is taken as its own UTF-8.
  #byteLevel(token: string): Uint8Array {
    const out: number[] = [];
    for (const ch of token) {
      const b = this.#charToByte.get(ch.codePointAt(0)!);
      if (b === undefined) return utf8.encode(token);
      out.push(b);
    }
    return Uint8Array.from(out);
  }

  #sentencePiece(token: string): Uint8Array {
    const d = this.decoder as Extract<DecoderKind, { kind: "sentencepiece" }>;
    const byte = d.byteFallback ? BYTE_TOKEN.exec(token) : null;
    if (byte) return Uint8Array.of(parseInt(byte[1]!, 16));
    return utf8.encode(token.replaceAll(d.replacement, " "));
  }
}
