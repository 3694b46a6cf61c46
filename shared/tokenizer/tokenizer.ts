// The tokenizer contract the engine and the API layer rely on, whatever the model's format.

export interface EncodeOptions {
  /** Match special tokens written literally in the text (e.g. "<|im_start|>") as their ids.
   * Off by default so user text cannot forge control tokens. */
  specials?: boolean;
  /**
   * Remember the ids of long sections (text between special tokens) under this scope, the
   * caller's tenant: a conversation is sent whole every turn, so all but its newest messages are
   * sections encoded last turn. Scopes never share what they remember, so one tenant's timing
   * cannot tell whether another sent a text.
   */
  remember?: string;
}

export interface DecodeOptions {
  /** Leave out special tokens (bos, eos, chat markers). */
  skipSpecial?: boolean;
}

/** Turns generated ids into text as they arrive, never splitting a UTF-8 character. */
export interface StreamDecoder {
  /** The text completed by this token; "" while a multi-byte character is still partial. */
  push(id: number): string;
  /** Whatever is still pending (an incomplete character becomes U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** Every id that ends generation: eos plus end-of-turn tokens such as <|im_end|>. */
  readonly eosIds: readonly number[];
  /** Whether the model expects bos before the prompt (when its template does not write it). */
  readonly addBos: boolean;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  /** The model's own Jinja chat template, if it ships one. */
  readonly chatTemplate: string | undefined;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
  isSpecial(id: number): boolean;
  createStreamDecoder(opts?: DecodeOptions): StreamDecoder;
}

export class TokenizerError extends Error {
  override readonly name = "TokenizerError";
}
