// SentencePiece GGUF files carry scores, not merges. Hugging Face's GGUF converter
// (transformers integrations/ggml.py) derives BPE merges from them; we do the same so a
// GGUF and its tokenizer.json tokenize alike: every split of a token into two vocabulary
// tokens is a merge, ranked by the merged token's score (highest first).

/** @example spmMerges(["▁", "t", "▁t"], [0, 0, -1]) // [["▁", "t"]] */
export function spmMerges(tokens: string[], scores: number[]): [string, string][] {
  const scoreOf = new Map<string, number>();
  tokens.forEach((token, i) => scoreOf.set(token, scores[i] ?? 0));
  const merges: { left: string; right: string; score: number }[] = [];
  for (const [token, score] of scoreOf) {
    const chars = Array.from(token);
    const local: { left: string; right: string; score: number }[] = [];
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join("");
      const right = chars.slice(i).join("");
      if (scoreOf.has(left) && scoreOf.has(right)) local.push({ left, right, score });
    }
    // Same tie order as the converter: by the pieces' own scores, descending.
    local.sort((a, b) => scoreOf.get(b.left)! - scoreOf.get(a.left)! || scoreOf.get(b.right)! - scoreOf.get(a.right)!);
    merges.push(...local);
  }
  merges.sort((a, b) => b.score - a.score); // stable, like Python's sorted
  return merges.map((m) => [m.left, m.right]);
}
