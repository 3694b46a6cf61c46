// Token masks for JSON output. A JsonGrammar (one per schema and vocabulary, shared by requests)
// computes which tokens may come next in a recognizer state by walking the byte-sorted
// vocabulary once, and caches the mask on MLX by the state's key: a schema's states repeat
// (every string body, every "after a value"), so most tokens cost a key and a lookup. A
// JsonConstraint is one request's position in its grammar.
import { array, Dtype, keep, type MxArray } from "../../mlx/index.ts";
import type { Tokenizer } from "../../tokenizer/tokenizer.ts";
import type { TokenConstraint } from "../sampling/chain.ts";
import { advance, canEnd, distanceToEnd, initialState, isComplete, plainRoom, type State, stateKey, stepState } from "./recognizer.ts";
import { anyObjectGrammar, compileSchema, type Node } from "./schema.ts";
import { type SortedTokens, TokenVocabulary } from "./vocabulary.ts";

/** What the output must be: any JSON object, or a value valid against a JSON Schema. */
export type JsonFormat = { type: "json_object" } | { type: "json_schema"; schema: unknown };

export class ConstraintError extends Error {
  override name = "ConstraintError";
}

/** Masks kept per grammar: 2 x 49 KB each at a 49K vocabulary (on MLX, and on the host for the budget checks). */
const MAX_CACHED_MASKS = 128;
/** Budget checks start this many tokens (bytes of completion) before they could matter. */
const BUDGET_WINDOW = 24;
/** Compiled grammars kept per vocabulary (so at most ~200 MB of masks at a 49K vocabulary). */
const MAX_GRAMMARS = 16;

export class JsonGrammar {
  readonly #masks = new Map<string, { mask: MxArray; ids: Uint8Array }>();
  #freed = false;
  #users = 0;
  #evicted = false;
  /** Masks computed (cache misses) and served from cache, for tests and benchmarks. */
  readonly stats = { computed: 0, cached: 0 };

  constructor(readonly root: Node, readonly vocabulary: TokenVocabulary) {}

  static #grammars = new WeakMap<TokenVocabulary, Map<string, JsonGrammar>>();

  /**
   * The grammar of `format` over `vocabulary`, compiled once per schema text and kept (the
   * least recently used are dropped past 16). Throws SchemaError for unsupported or invalid schemas.
   * @example JsonGrammar.for(TokenVocabulary.of(tokenizer), { type: "json_object" })
   */
  static for(vocabulary: TokenVocabulary, format: JsonFormat): JsonGrammar {
    const text = format.type === "json_object" ? "" : JSON.stringify(format.schema);
    let byText = JsonGrammar.#grammars.get(vocabulary);
    if (!byText) JsonGrammar.#grammars.set(vocabulary, (byText = new Map()));
    let g = byText.get(text);
    if (g) {
      byText.delete(text);
    } else {
      g = new JsonGrammar(format.type === "json_object" ? anyObjectGrammar() : compileSchema(format.schema), vocabulary);
      if (byText.size >= MAX_GRAMMARS) {
        const [oldest, old] = byText.entries().next().value!;
        byText.delete(oldest);
        old.#evict();
      }
    }
    byText.set(text, g);
    return g;
  }

  /** 1 for each token id that may come next in `state` (computed, not cached). */
  allowedIds(state: State): Uint8Array {
    const v = this.vocabulary;
    const room = plainRoom(state);
    let out: Uint8Array;
    if (room === Infinity) {
      // Plain text leaves an unbounded string's state as it was: all of it is allowed.
      out = v.plainMask.slice();
      walk(v.rest, state, out);
    } else if (room >= 0) {
      out = new Uint8Array(v.size);
      const { plain, plainChars } = v;
      for (let i = 0; i < plain.length; i++) if (plainChars[i] <= room) out[plain[i]] = 1;
      walk(v.rest, state, out);
    } else {
      out = new Uint8Array(v.size);
      walk(v.all, state, out);
    }
    if (canEnd(state)) for (const id of v.eos) out[id] = 1;
    return out;
  }

  /** The mask (1, V) bool for `state`, cached by its key. Owned by the grammar. */
  mask(state: State): MxArray {
    return this.#entry(state).mask;
  }

  /** `allowedIds(state)`, from the cache when it is there (do not modify). */
  cachedIds(state: State): Uint8Array {
    return this.#entry(state).ids;
  }

  #entry(state: State): { mask: MxArray; ids: Uint8Array } {
    if (this.#freed) throw new Error("JsonGrammar used after free");
    const key = stateKey(state);
    const hit = this.#masks.get(key);
    if (hit) {
      this.stats.cached++;
      this.#masks.delete(key); // most recently used last
      this.#masks.set(key, hit);
      return hit;
    }
    this.stats.computed++;
    const ids = this.allowedIds(state);
    if (!ids.includes(1)) throw new ConstraintError("bug: no token can continue the JSON output");
    const entry = { mask: keep(array(ids, [1, this.vocabulary.size], Dtype.bool)), ids };
    if (this.#masks.size >= MAX_CACHED_MASKS) {
      const [oldest, old] = this.#masks.entries().next().value!;
      this.#masks.delete(oldest);
      old.mask.free(); // a graph that still reads it keeps its data alive
    }
    this.#masks.set(key, entry);
    return entry;
  }

  /** A request starts using this grammar; it is not freed while any does. */
  acquire(): void {
    this.#users++;
  }

  release(): void {
    this.#users--;
    if (this.#evicted && this.#users === 0) this.free();
  }

  // Dropped from the cache: freed now, or when its last request ends.
  #evict(): void {
    this.#evicted = true;
    if (this.#users === 0) this.free();
  }

  free(): void {
    for (const m of this.#masks.values()) m.mask.free();
    this.#masks.clear();
    this.#freed = true;
  }
}

// Steps the state down the byte-sorted tokens, reusing the state after each shared prefix, and
// skipping every token that starts with a refused prefix.
function walk(list: SortedTokens, start: State, out: Uint8Array): void {
  const { ids, bytes, shared } = list;
  const states: State[] = [start];
  let accepted = 0; // bytes of the previous token the state took
  for (let i = 0; i < ids.length; i++) {
    let d = shared[i];
    if (d > accepted) continue;
    const b = bytes[i];
    let s = states[d];
    for (; d < b.length; d++) {
      s = stepState(s, b[d]);
      if (s.length === 0) break;
      states[d + 1] = s;
    }
    accepted = d;
    if (d === b.length) out[ids[i]] = 1;
  }
}

/**
 * One request's constrained output: `allowed()` is the mask for the next token, `accept(id)`
 * moves past the chosen one. End of sequence is allowed only once the JSON value is complete,
 * and then it is the only token allowed.
 * @example
 * const c = createJsonConstraint(tokenizer, V, { type: "json_schema", schema });
 * const chain = new SamplerChain({ temperature: 0.7 }, V, { constraint: c });
 */
export class JsonConstraint implements TokenConstraint {
  #state: State;
  #ended = false;
  #count = 0;
  #budgetMask: MxArray | null = null;

  /**
   * @param maxTokens the request's token limit (end of sequence included). Near it, only tokens
   * after which the value can still be completed in time are allowed, so the output is not cut
   * off mid-value unless the limit is below the shortest valid output.
   */
  #released = false;

  constructor(readonly grammar: JsonGrammar, readonly maxTokens = Infinity) {
    this.#state = initialState(grammar.root);
    grammar.acquire();
  }

  allowed(vocabSize: number): MxArray {
    if (vocabSize !== this.grammar.vocabulary.size) throw new RangeError(`constraint built for ${this.grammar.vocabulary.size} logits, got ${vocabSize}`);
    if (this.#ended) throw new ConstraintError("the constrained output has already ended");
    return this.#withinBudget() ?? this.grammar.mask(this.#state);
  }

  // After this token, `left` more may come, the end of sequence among them. Within a window of
  // the limit, the mask keeps only tokens after which the shortest completion (in bytes, so at
  // least as many as the tokens it needs) still fits; not cached, as it depends on `left`.
  #withinBudget(): MxArray | null {
    this.#budgetMask?.free();
    this.#budgetMask = null;
    const left = this.maxTokens - this.#count - 1;
    if (!Number.isFinite(left)) return null;
    const g = this.grammar;
    const v = g.vocabulary;
    if (distanceToEnd(this.#state) + 1 + BUDGET_WINDOW <= left) return null;
    const allowed = g.cachedIds(this.#state).slice();
    // Plain text inside a string never lengthens the way out: it is in time iff the state is.
    const plainInTime = plainRoom(this.#state) >= 0 ? distanceToEnd(this.#state) + 1 <= left : null;
    let any = false;
    for (let id = 0; id < v.size; id++) {
      if (!allowed[id] || v.eos.includes(id)) continue;
      const inTime = plainInTime !== null && v.plainMask[id] ? plainInTime : distanceToEnd(advance(this.#state, v.bytes[id]!)) + 1 <= left;
      if (inTime) any = true;
      else allowed[id] = 0;
    }
    if (!any && !v.eos.some((id) => allowed[id])) return null; // too late to finish in time: the plain mask
    return (this.#budgetMask = keep(array(allowed, [1, v.size], Dtype.bool)));
  }

  accept(id: number): void {
    if (this.#ended) throw new ConstraintError(`token ${id} after the end of the constrained output`);
    this.#count++;
    const v = this.grammar.vocabulary;
    if (v.eos.includes(id)) {
      if (!canEnd(this.#state)) throw new ConstraintError(`end of sequence before the JSON value is complete`);
      this.#ended = true;
      return;
    }
    const bytes = id >= 0 && id < v.size ? v.bytes[id] : null;
    const next = bytes ? advance(this.#state, bytes) : [];
    if (!next.length) throw new ConstraintError(`token ${id} cannot continue the JSON output here`);
    this.#state = next;
  }

  /** The JSON value is complete: only end of sequence may follow. */
  get done(): boolean {
    return this.#ended || isComplete(this.#state);
  }

  /** The end-of-sequence token was accepted. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Allowed ids after the bytes so far (uncached; for tests). */
  allowedIds(): Uint8Array {
    return this.grammar.allowedIds(this.#state);
  }

  /** Whether `bytes` could be appended here (for tests). */
  accepts(bytes: Uint8Array): boolean {
    return advance(this.#state, bytes).length > 0;
  }

  /** Releases the request's budget mask and its hold on the (shared) grammar. Safe to call twice. */
  free(): void {
    this.#budgetMask?.free();
    this.#budgetMask = null;
    if (!this.#released) this.grammar.release();
    this.#released = true;
  }
}

/**
 * A constraint for one request: `vocabSize` is the model's logits width, `maxTokens` the
 * request's limit. Throws SchemaError naming unsupported keywords or invalid parts of a schema.
 */
export function createJsonConstraint(tokenizer: Tokenizer, vocabSize: number, format: JsonFormat, opts: { maxTokens?: number } = {}): JsonConstraint {
  return new JsonConstraint(JsonGrammar.for(TokenVocabulary.of(tokenizer, vocabSize), format), opts.maxTokens);
}
