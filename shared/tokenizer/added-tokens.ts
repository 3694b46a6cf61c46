// Finds added tokens (chat markers, tool tags) in text before the BPE sees it, the way
// Hugging Face's AddedVocabulary does: leftmost-longest match, optional whitespace
// stripping around a token, special tokens only when the caller allows them.

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  /** Matched against normalized text rather than the raw input. */
  normalized: boolean;
}

/** A piece of text to tokenize normally, or the id of an added token found in it. */
export type Section = string | number;

interface TrieNode {
  next: Map<number, TrieNode>;
  token?: AddedToken;
}

const WHITESPACE = /\s/u;
const WORD_CHAR = /[\p{L}\p{N}_]/u;

export class AddedTokenSplitter {
  readonly #root: TrieNode = { next: new Map() };
  readonly #empty: boolean;

  constructor(tokens: readonly AddedToken[]) {
    for (const token of tokens) {
      if (token.content.length === 0) continue;
      let node = this.#root;
      for (let i = 0; i < token.content.length; i++) {
        const code = token.content.charCodeAt(i);
        let child = node.next.get(code);
        if (!child) node.next.set(code, (child = { next: new Map() }));
        node = child;
      }
      node.token = token;
    }
    this.#empty = this.#root.next.size === 0;
  }

  /** Splits `text` into plain sections and added-token ids, in order; empty sections are dropped. */
  split(text: string, withSpecial: boolean): Section[] {
    if (this.#empty) return text.length > 0 ? [text] : [];
    const out: Section[] = [];
    let sectionStart = 0;
    let i = 0;
    while (i < text.length) {
      const match = this.#longestAt(text, i, withSpecial);
      if (!match) {
        i++;
        continue;
      }
      let start = i;
      let end = i + match.content.length;
      if (match.lstrip) while (start > sectionStart && WHITESPACE.test(text[start - 1]!)) start--;
      if (match.rstrip) while (end < text.length && WHITESPACE.test(text[end]!)) end++;
      if (start > sectionStart) out.push(text.slice(sectionStart, start));
      out.push(match.id);
      sectionStart = i = end;
    }
    if (sectionStart < text.length) out.push(text.slice(sectionStart));
    return out;
  }

  #longestAt(text: string, at: number, withSpecial: boolean): AddedToken | undefined {
    let node: TrieNode | undefined = this.#root;
    let best: AddedToken | undefined;
    for (let j = at; j < text.length; j++) {
      node = node.next.get(text.charCodeAt(j));
      if (!node) break;
      const token = node.token;
      if (token && (withSpecial || !token.special) && this.#fitsWord(text, at, j + 1, token)) best = token;
    }
    return best;
  }

  #fitsWord(text: string, start: number, end: number, token: AddedToken): boolean {
    if (!token.singleWord) return true;
    const before = start > 0 && WORD_CHAR.test(text[start - 1]!);
    const after = end < text.length && WORD_CHAR.test(text[end]!);
    return !before && !after;
  }
}
