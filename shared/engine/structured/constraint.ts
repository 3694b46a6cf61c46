// Token masks for JSON output. A JsonGrammar (one per schema and vocabulary, shared by requests)
// computes which tokens may come next in a recognizer state by walking the byte-sorted
// vocabulary once, and caches the mask on MLX by the state's key: a schema's states repeat
// (every string body, every "after a value"), so most tokens cost a key and a lookup. A
// JsonConstraint is one request's position in its grammar, and its way out: near the token
// limit it keeps only tokens after which the value can still be closed in time.
import { array, Dtype, keep, type MxArray } from "../../mlx/index.ts";
import type { Tokenizer } from "../../tokenizer/tokenizer.ts";
import type { TokenConstraint } from "../sampling/chain.ts";
import { advance, canEnd, completion, initialState, isComplete, largestChoice, plainRoom, type State, stateKey, stepState } from "./recognizer.ts";
import { anyObjectGrammar, compileSchema, type Node } from "./schema.ts";
import { type SortedTokens, TokenVocabulary } from "./vocabulary.ts";

/**
 * What the output must be: any JSON object, or a value valid against a JSON Schema, then
 * `suffix` verbatim (the "}" closing a tool call whose arguments the value is).
 */
export type JsonFormat = { type: "json_object" } | { type: "json_schema"; schema: unknown; suffix?: string };

export class ConstraintError extends Error {
  override name = "ConstraintError";
}

/** Masks kept per grammar: 2 x 49 KB each at a 49K vocabulary (on MLX, and on the host for the budget checks). */
const MAX_CACHED_MASKS = 128;
/**
 * Tokens of slack beyond the largest choice of a grammar before budget checks start: a
 * re-tokenized way out may need a few more tokens than the one before it.
 */
const BUDGET_SLACK = 24;
/** Compiled grammars kept per vocabulary (so at most ~200 MB of masks at a 49K vocabulary). */
const MAX_GRAMMARS = 16;
const utf8 = new TextEncoder();

/** Per state: the tokens of the way out after each allowed token that is not plain string content. */
type WaysOut = {
  ids: Int32Array;
  tokens: Float64Array;
  /** Inside a string: the way out after plain text of n characters, by n (null elsewhere). */
  plain: Float64Array | null;
};

type Entry = { mask: MxArray; ids: Uint8Array; waysOut: WaysOut | null };

export class JsonGrammar {
  readonly #masks = new Map<string, Entry>();
  #freed = false;
  #users = 0;
  #evicted = false;
  /** Budget checks run once the way out plus this many tokens no longer fit (see BUDGET_SLACK). */
  readonly window: number;
  /** Masks computed (cache misses) and served from cache, for tests and benchmarks. */
  readonly stats = { computed: 0, cached: 0 };

  constructor(readonly root: Node, readonly vocabulary: TokenVocabulary, readonly suffix: Uint8Array | null = null) {
    this.window = BUDGET_SLACK + largestChoice(root) + (suffix?.length ?? 0);
  }

  static #grammars = new WeakMap<TokenVocabulary, Map<string, JsonGrammar>>();

  /**
   * The grammar of `format` over `vocabulary`, compiled once per schema text and kept (the
   * least recently used are dropped past 16). Throws SchemaError for unsupported or invalid schemas.
   * @example JsonGrammar.for(TokenVocabulary.of(tokenizer), { type: "json_object" })
   */
  static for(vocabulary: TokenVocabulary, format: JsonFormat): JsonGrammar {
    const text = format.type === "json_object" ? "" : `${JSON.stringify(format.schema)}\0${format.suffix ?? ""}`;
    let byText = JsonGrammar.#grammars.get(vocabulary);
    if (!byText) JsonGrammar.#grammars.set(vocabulary, (byText = new Map()));
    let g = byText.get(text);
    if (g) {
      byText.delete(text);
    } else {
      g = format.type === "json_object"
        ? new JsonGrammar(anyObjectGrammar(), vocabulary)
        : new JsonGrammar(compileSchema(format.schema), vocabulary, format.suffix ? utf8.encode(format.suffix) : null);
      if (byText.size >= MAX_GRAMMARS) {
        const [oldest, old] = byText.entries().next().value!;
        byText.delete(oldest);
        old.#evict();
      }
    }
    byText.set(text, g);
    return g;
  }

  /** The state before any output. */
  start(): State {
    return initialState(this.root, this.suffix);
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

  /**
   * Tokens that complete the value from `state`: the tokenizer's spelling of the shortest
   * completion (after the UTF-8 continuation bytes still due); null if there is none.
   */
  plan(state: State): Int32Array | null {
    const c = completion(state);
    if (!c) return null;
    const text = this.vocabulary.spell(c.text);
    if (!text || !c.bytes) return text;
    const ids: number[] = [];
    let s = state;
    for (let i = 0; i < c.bytes; i++) {
      const b = this.#continuation(s);
      if (b < 0) return null;
      ids.push(this.vocabulary.byteToken[b]);
      s = stepState(s, b);
    }
    return Int32Array.from([...ids, ...text]);
  }

  /** The length of `plan(state)` (Infinity if none), without building it. */
  planLength(state: State): number {
    const c = completion(state);
    const text = c && this.vocabulary.spell(c.text);
    return text ? c.bytes + text.length : Infinity;
  }

  // A continuation byte `state` takes that is a token of its own (-1 if none).
  #continuation(state: State): number {
    for (let b = 0x80; b <= 0xbf; b++) if (this.vocabulary.byteToken[b] >= 0 && stepState(state, b).length) return b;
    return -1;
  }

  /** The way out after each token allowed in `state` (cached with its mask). */
  waysOut(state: State): WaysOut {
    const entry = this.#entry(state);
    if (entry.waysOut) return entry.waysOut;
    const v = this.vocabulary;
    const room = plainRoom(state);
    const eos = new Set(v.eos);
    const ids: number[] = [];
    const tokens: number[] = [];
    for (let id = 0; id < v.size; id++) {
      if (!entry.ids[id] || eos.has(id) || (room >= 0 && v.plainMask[id])) continue;
      ids.push(id);
      tokens.push(this.planLength(advance(state, v.bytes[id]!)));
    }
    let plain: Float64Array | null = null;
    if (room >= 0) {
      // Plain text of n characters leaves the same state whatever its characters.
      plain = new Float64Array(Math.min(room, v.maxPlainChars) + 1).fill(Infinity);
      for (let n = 1; n < plain.length; n++) plain[n] = this.planLength(advance(state, utf8.encode("a".repeat(n))));
    }
    return (entry.waysOut = { ids: Int32Array.from(ids), tokens: Float64Array.from(tokens), plain });
  }

  #entry(state: State): Entry {
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
    const entry: Entry = { mask: keep(array(ids, [1, this.vocabulary.size], Dtype.bool)), ids, waysOut: null };
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
 *
 * With a token limit it keeps a plan: tokens that would complete the value from here, which
 * with the end of sequence always fit in what the limit leaves. Within `grammar.window` tokens
 * of the limit, a token is allowed only if it is the plan's next one or the way out after it
 * still fits; the plan then moves on by one token, or becomes the way out after the token
 * chosen. So a wandering output is closed in time, unless the limit is below the shortest
 * valid output to begin with.
 * @example
 * const c = createJsonConstraint(tokenizer, V, { type: "json_schema", schema }, { maxTokens: 64 });
 * const chain = new SamplerChain({ temperature: 0.7 }, V, { constraint: c });
 */
export class JsonConstraint implements TokenConstraint {
  #state: State;
  #ended = false;
  #count = 0;
  #released = false;
  /** Completes the value from #state (undefined: not computed yet; null: none). */
  #plan: Int32Array | null | undefined = undefined;
  #budgetMask: MxArray | null = null;

  /** @param maxTokens the request's token limit, end of sequence included */
  constructor(readonly grammar: JsonGrammar, readonly maxTokens = Infinity) {
    this.#state = grammar.start();
    grammar.acquire();
  }

  allowed(vocabSize: number): MxArray {
    if (vocabSize !== this.grammar.vocabulary.size) throw new RangeError(`constraint built for ${this.grammar.vocabulary.size} logits, got ${vocabSize}`);
    if (this.#ended) throw new ConstraintError("the constrained output has already ended");
    this.#budgetMask?.free();
    this.#budgetMask = null;
    // Tokens that may still come, this one and the end of sequence included.
    const left = this.maxTokens - this.#count;
    if (!Number.isFinite(left)) return this.grammar.mask(this.#state);
    const plan = (this.#plan ??= this.grammar.plan(this.#state));
    // Far from the limit, no one token can make it too short; past it, nothing can help.
    if (!plan || plan.length + 1 + this.grammar.window <= left || plan.length + 1 > left) return this.grammar.mask(this.#state);
    return (this.#budgetMask = keep(array(this.#inTime(plan, left), [1, this.grammar.vocabulary.size], Dtype.bool)));
  }

  // The allowed tokens after which the way out and the end of sequence fit in `left` - 1.
  #inTime(plan: Int32Array, left: number): Uint8Array {
    const g = this.grammar;
    const v = g.vocabulary;
    const out = g.cachedIds(this.#state).slice();
    const ways = g.waysOut(this.#state);
    const most = left - 2;
    const next = plan.length ? plan[0] : -1;
    for (let i = 0; i < ways.ids.length; i++) if (ways.tokens[i] > most && ways.ids[i] !== next) out[ways.ids[i]] = 0;
    const p = ways.plain;
    if (p && p.some((n) => n > most && Number.isFinite(n))) {
      for (let i = 0; i < v.plain.length; i++) {
        const id = v.plain[i];
        const chars = v.plainChars[i];
        if (out[id] && id !== next && (chars >= p.length || p[chars] > most)) out[id] = 0;
      }
    }
    return out;
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
    if (!Number.isFinite(this.maxTokens)) return;
    // The plan moves on by the token it named, unless the way out from here is shorter.
    const carried = this.#plan && this.#plan[0] === id ? this.#plan.subarray(1) : null;
    const fresh = this.grammar.plan(next);
    this.#plan = carried && (!fresh || carried.length <= fresh.length) ? carried : fresh;
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
