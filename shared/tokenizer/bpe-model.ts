// The BPE model of a tokenizer.json (HF tokenizers' models/bpe semantics): merges applied
// by rank, leftmost first on ties, unknown characters to <0xNN> byte tokens or unk.
// Ours rather than @huggingface/tokenizers' because that one spent 100-200 ms per 10K
// tokens of unseen text (string pair keys, an object per heap node); this one keys pairs
// by number, keeps the heap in a number array and caches each pre-tokenized word.
import { TokenizerError } from "./tokenizer.ts";

export interface BpeConfig {
  type?: string;
  vocab: Record<string, number>;
  /** "a b" strings (older files) or [a, b] pairs, highest priority first. */
  merges: (string | [string, string])[];
  unk_token?: string | null;
  fuse_unk?: boolean;
  byte_fallback?: boolean;
  ignore_merges?: boolean;
  continuing_subword_prefix?: string | null;
  end_of_word_suffix?: string | null;
}

const CACHE_LIMIT = 100_000;
const CACHE_MAX_WORD = 256; // longer words (whole SentencePiece texts) are not worth keeping

const utf8 = new TextEncoder();

export class BpeModel {
  readonly vocab = new Map<string, number>();
  readonly #pairBase: number;
  /** (left id * pairBase + right id) -> merge rank. */
  readonly #rankOf = new Map<number, number>();
  /** rank -> id of the merged token. */
  readonly #mergedId: Int32Array;
  readonly #byteIds = new Int32Array(256).fill(-1);
  readonly #byteFallback: boolean;
  readonly #unkId: number | undefined;
  readonly #fuseUnk: boolean;
  readonly #ignoreMerges: boolean;
  readonly #cache = new Map<string, number[]>();

  constructor(config: BpeConfig) {
    if (config.type !== undefined && config.type !== "BPE") {
      throw new TokenizerError(`tokenizer model "${config.type}" is not supported (BPE is)`);
    }
    if (config.continuing_subword_prefix || config.end_of_word_suffix) {
      throw new TokenizerError("BPE subword prefixes/suffixes are not supported");
    }
    let maxId = -1;
    for (const [token, id] of Object.entries(config.vocab)) {
      this.vocab.set(token, id);
      if (id > maxId) maxId = id;
    }
    this.#pairBase = maxId + 1;
    this.#mergedId = new Int32Array(config.merges.length);
    config.merges.forEach((merge, rank) => {
      const [left, right] = typeof merge === "string" ? splitMerge(merge) : merge;
      const l = this.vocab.get(left);
      const r = this.vocab.get(right);
      const merged = this.vocab.get(left + right);
      if (l === undefined || r === undefined || merged === undefined) return; // HF rejects these; we skip
      const key = l * this.#pairBase + r;
      if (!this.#rankOf.has(key)) this.#rankOf.set(key, rank);
      this.#mergedId[rank] = merged;
    });
    this.#byteFallback = config.byte_fallback ?? false;
    if (this.#byteFallback) {
      for (let b = 0; b < 256; b++) {
        this.#byteIds[b] = this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`) ?? -1;
      }
    }
    this.#unkId = config.unk_token == null ? undefined : this.vocab.get(config.unk_token);
    this.#fuseUnk = config.fuse_unk ?? false;
    this.#ignoreMerges = config.ignore_merges ?? false;
  }

  /** Appends the ids of one pre-tokenized word to `out`. */
  encodeWord(word: string, out: number[]): void {
    if (word.length === 0) return;
    const cached = this.#cache.get(word);
    if (cached) {
      for (const id of cached) out.push(id);
      return;
    }
    const whole = this.#ignoreMerges ? this.vocab.get(word) : undefined;
    const ids = whole !== undefined ? [whole] : this.#merge(this.#symbols(word));
    if (word.length <= CACHE_MAX_WORD) {
      if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
      this.#cache.set(word, ids);
    }
    for (const id of ids) out.push(id);
  }

  /** One symbol per character; a character outside the vocabulary becomes byte tokens or unk. */
  #symbols(word: string): number[] {
    const symbols: number[] = [];
    let pendingUnk = false;
    for (const ch of word) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        symbols.push(id);
        pendingUnk = false;
        continue;
      }
      const bytes = this.#byteFallback ? utf8.encode(ch) : null;
      if (bytes && bytes.every((b) => this.#byteIds[b] !== -1)) {
        for (const b of bytes) symbols.push(this.#byteIds[b]!);
        pendingUnk = false;
        continue;
      }
      if (this.#unkId === undefined) continue; // as HF: no unk token, the character is dropped
      if (!(this.#fuseUnk && pendingUnk)) symbols.push(this.#unkId);
      pendingUnk = true;
    }
    return symbols;
  }

  /** Applies merges lowest rank first (leftmost on ties) over a linked list of symbols. */
  #merge(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Heap of rank * n + position: ordered by rank, then by position.
    const heap: number[] = [];
    const push = (pos: number) => {
      const right = next[pos]!;
      if (right === -1) return;
      const rank = this.#rankOf.get(ids[pos]! * this.#pairBase + ids[right]!);
      if (rank !== undefined) heapPush(heap, rank * n + pos);
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    while (heap.length > 0) {
      const top = heapPop(heap);
      const pos = top % n;
      const rank = (top - pos) / n;
      const right = next[pos]!;
      // Entries go stale when a neighbour merged first; skip those.
      if (!alive[pos] || right === -1 || this.#rankOf.get(ids[pos]! * this.#pairBase + ids[right]!) !== rank) continue;
      ids[pos] = this.#mergedId[rank]!;
      alive[right] = 0;
      next[pos] = next[right]!;
      if (next[right]! !== -1) prev[next[right]!] = pos;
      if (prev[pos]! !== -1) push(prev[pos]!);
      push(pos);
    }
    const out: number[] = [];
    for (let i = 0; i !== -1; i = next[i]!) out.push(ids[i]!);
    return out;
  }
}

function splitMerge(merge: string): [string, string] {
  const parts = merge.split(" ");
  if (parts.length !== 2) throw new TokenizerError(`malformed merge "${merge}"`);
  return parts as [string, string];
}

function heapPush(heap: number[], value: number): void {
  let i = heap.push(value) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]! <= value) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = value;
}

function heapPop(heap: number[]): number {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length > 0) {
    let i = 0;
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && heap[r]! < heap[l]! ? r : l;
      if (heap[child]! >= last) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
  return top;
}
