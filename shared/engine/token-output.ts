// What one sequence's generated tokens become: streamed text (never a split character, never
// a stop string), and when generation ends: EOS, a stop string, or the token limit.
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { FinishReason, TopLogprob } from "./engine.ts";
import { StopMatcher } from "./stop-matcher.ts";

export type TokenEvent = { type: "token"; id: number; text: string; logprob?: number; topLogprobs?: TopLogprob[] };

/** What a step reports about the model's distribution besides the token (when asked). */
export type TokenStats = { logprob?: number; topLogprobs?: TopLogprob[] };

export class TokenOutput {
  readonly #stops: StopMatcher;
  readonly #text: ReturnType<Tokenizer["createStreamDecoder"]>;
  readonly #eos: ReadonlySet<number>;
  /** Tokens generated so far, an ending EOS included. */
  count = 0;
  /** Set once generation has ended. */
  reason: FinishReason | null = null;
  stop: string | null = null;

  constructor(tokenizer: Tokenizer, readonly opts: { stop?: readonly string[]; maxTokens: number }) {
    this.#stops = new StopMatcher(opts.stop ?? []);
    this.#text = tokenizer.createStreamDecoder();
    this.#eos = new Set(tokenizer.eosIds);
  }

  /** Takes the next generated token: its event (none for an ending EOS); `reason` is set if it ends generation. */
  push(id: number, stats: TokenStats = {}): TokenEvent | null {
    this.count++;
    if (this.#eos.has(id)) {
      this.reason = "eos";
      return null;
    }
    const r = this.#stops.push(this.#text.push(id));
    if (r.stop !== null) {
      this.reason = "stop";
      this.stop = r.stop;
    } else if (this.count >= this.opts.maxTokens) this.reason = "length";
    return { type: "token", id, text: r.emit, ...stats };
  }

  /** The constrained output is complete: generation ends as at an end of sequence (a stop string still wins). */
  complete(): void {
    if (this.reason === null || this.reason === "length") this.reason = "eos";
  }

  /** Ends generation for `reason` unless it already ended; returns text still held back ("" after a stop string). */
  end(reason: FinishReason): string {
    this.reason ??= reason;
    if (this.reason === "stop") return "";
    return this.#stops.push(this.#text.flush()).emit + this.#stops.flush();
  }
}
