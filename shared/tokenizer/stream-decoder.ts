// Token ids -> text over bytes. TextDecoder's streaming mode holds an incomplete UTF-8
// sequence until its last byte arrives, so the streamed pieces always join to the same
// string as a one-shot decode of the same bytes.
import type { StreamDecoder } from "./tokenizer.ts";

export interface ByteSource {
  bytesOf(id: number): Uint8Array;
  /** SentencePiece decoders drop the space their encoder put before the first word. */
  stripLeadingSpace: boolean;
  skip(id: number): boolean;
}

const SPACE = 0x20;

export function createByteStreamDecoder(source: ByteSource): StreamDecoder {
  // ignoreBOM keeps a U+FEFF the model generated instead of silently eating it.
  const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
  let atStart = source.stripLeadingSpace;
  return {
    push(id: number): string {
      if (source.skip(id)) return "";
      let bytes = source.bytesOf(id);
      if (atStart && bytes.length > 0) {
        atStart = false;
        if (bytes[0] === SPACE) bytes = bytes.subarray(1);
      }
      return utf8.decode(bytes, { stream: true });
    },
    flush(): string {
      return utf8.decode();
    },
  };
}

/** One-shot decode, equal to pushing every id through a stream decoder and flushing. */
export function decodeBytes(source: ByteSource, ids: readonly number[]): string {
  const parts: Uint8Array[] = [];
  let length = 0;
  for (const id of ids) {
    if (source.skip(id)) continue;
    const bytes = source.bytesOf(id);
    parts.push(bytes);
    length += bytes.length;
  }
  const all = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  const skipSpace = source.stripLeadingSpace && all[0] === SPACE ? 1 : 0;
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(all.subarray(skipSpace));
}
