// Tokenizer and chat template against two independent references for SmolLM2's GGUF:
// transformers (tests/fixtures/smollm2-tokenizer.json, scripts/reference/transformers_fixtures.py)
// and llama.cpp (tests/fixtures/smollm2-tokenizer-llamacpp.json, scripts/reference/llama-cpp-tokens.mjs).
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { GgufHeader, GgufValue } from "../shared/models/gguf.ts";
import { ChatTemplate, ChatTemplateError } from "../shared/tokenizer/chat-template.ts";
import { tokenizerFromGguf } from "../shared/tokenizer/gguf-tokenizer.ts";
import { loadTokenizer, tokenizerFromHuggingFace } from "../shared/tokenizer/load-tokenizer.ts";
import type { Tokenizer } from "../shared/tokenizer/tokenizer.ts";

const MODEL = join(homedir(), ".cache/semantic/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const HF_FIXTURE = join(import.meta.dir, "fixtures/smollm2-tokenizer.json");
const LLAMA_CPP_FIXTURE = join(import.meta.dir, "fixtures/smollm2-tokenizer-llamacpp.json");

interface Case {
  text: string;
  ids: number[];
  decoded: string;
  /** Present where SmolLM2's own pre-tokenizer gives other ids than transformers' GGUF conversion. */
  ids_digit_split?: number[];
}
interface ChatExample {
  messages: { role: string; content: string }[];
  add_generation_prompt: boolean;
  rendered: string;
}
interface HfFixture {
  cases: Case[];
  special: { bos_id: number; eos_id: number; added_tokens: { id: number; content: string }[] };
  chat_template: string;
  chat_example: ChatExample;
  chat_example_default_system: ChatExample;
}

// transformers builds a GGUF's tokenizer with the plain GPT-2 pre-tokenizer and ignores
// tokenizer.ggml.pre ("smollm": every \p{N} character isolated, as in SmolLM2's own
// tokenizer.json, whose Digits step splits on Rust's char::is_numeric). Where that matters (a
// numeric such as "½" after a space) the fixture also gives `ids_digit_split`, the ids under
// SmolLM2's original pre-tokenizer; we follow those, as llama.cpp does.
const expectedIds = (c: Case) => c.ids_digit_split ?? c.ids;

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;
const hasModel = existsSync(MODEL);
// describe.if still runs its body to collect tests, so the model loads only when present.
const smol = hasModel ? loadTokenizer(MODEL) : undefined!;
const streamed = (tok: Tokenizer, ids: number[]) => {
  const stream = tok.createStreamDecoder();
  return ids.map((id) => stream.push(id)).join("") + stream.flush();
};

const withHf = hasModel && existsSync(HF_FIXTURE);
describe.if(withHf)("SmolLM2 tokenizer vs transformers", () => {
  const tok = smol;
  const fx = withHf ? readJson<HfFixture>(HF_FIXTURE) : undefined!;

  test("vocabulary and special ids", () => {
    expect(tok.vocabSize).toBe(49152);
    expect(tok.bosId).toBe(fx.special.bos_id);
    expect(tok.eosId).toBe(fx.special.eos_id);
    expect(tok.eosIds).toEqual([2, 0]); // <|im_end|>, then <|endoftext|>
    expect(tok.addBos).toBe(false);
    for (const { id, content } of fx.special.added_tokens) {
      expect(tok.idToToken(id)).toBe(content);
      expect(tok.tokenToId(content)).toBe(id);
      expect(tok.isSpecial(id)).toBe(true);
    }
    expect(tok.isSpecial(tok.tokenToId("Hello")!)).toBe(false);
  });

  test("ids equal transformers' for every case", () => {
    const mismatches = fx.cases
      .filter((c) => JSON.stringify(tok.encode(c.text, { specials: true })) !== JSON.stringify(expectedIds(c)))
      .map((c) => c.text);
    expect(mismatches).toEqual([]);
  });

  test("we differ from transformers' GGUF conversion only where it drops the digit split", () => {
    const differing = fx.cases.filter((c) => JSON.stringify(tok.encode(c.text, { specials: true })) !== JSON.stringify(c.ids));
    expect(differing.map((c) => c.text)).toEqual(fx.cases.filter((c) => c.ids_digit_split).map((c) => c.text));
    for (const c of differing) {
      expect(c.text).toMatch(/\s[^\P{N}0-9]/u); // a non-ASCII numeric right after whitespace
      expect(tok.decode(c.ids)).toBe(c.text); // transformers' ids still decode to the same text
    }
  });

  test("decode matches transformers and round-trips every case", () => {
    for (const c of fx.cases) {
      expect(tok.decode(c.ids)).toBe(c.decoded);
      expect(tok.decode(tok.encode(c.text, { specials: true }))).toBe(c.text);
    }
  });

  test("streamed pieces join to decode for every case", () => {
    for (const c of fx.cases) expect(streamed(tok, c.ids)).toBe(tok.decode(c.ids));
  });

  test("a character split across byte tokens waits for its last byte", () => {
    const ids = tok.encode("🎉");
    expect(ids.length).toBe(3);
    const stream = tok.createStreamDecoder();
    expect(ids.map((id) => stream.push(id))).toEqual(["", "", "🎉"]);
    expect(stream.flush()).toBe("");

    const mixed = tok.encode("日本語 🎉 ok");
    const s2 = tok.createStreamDecoder();
    const pieces = mixed.map((id) => s2.push(id));
    expect(pieces.every((p) => !p.includes("\uFFFD"))).toBe(true);
    expect(pieces.join("")).toBe("日本語 🎉 ok");
  });

  test("flush turns a dangling partial character into U+FFFD", () => {
    const [first] = tok.encode("🎉");
    const stream = tok.createStreamDecoder();
    expect(stream.push(first!)).toBe("");
    expect(stream.flush()).toBe("\uFFFD");
  });

  test("specials are matched only when asked", () => {
    const text = "<|im_start|>user\nhi<|im_end|>";
    expect(tok.encode(text, { specials: true })).toEqual([1, 4093, 198, 6004, 2]);
    const plain = tok.encode(text);
    expect(plain).not.toContain(1);
    expect(plain).not.toContain(2);
    expect(tok.decode(plain)).toBe(text);
  });

  test("a conversation sent again, grown by a turn, encodes as a fresh tokenizer does (long sections are remembered)", () => {
    const long = fx.cases.map((c) => c.text).join(" ").repeat(3);
    const turn = (user: string, assistant: string) => `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n${assistant}<|im_end|>\n`;
    const first = `<|im_start|>system\n${long}<|im_end|>\n${turn(long.slice(7), long.slice(3))}`;
    const grown = `${first}${turn(long.slice(11), "ok")}`;
    const fresh = loadTokenizer(MODEL);
    for (const text of [first, grown, grown, long, `${long}<|im_end|>${long}`])
      for (const specials of [true, false])
        for (const remember of ["tenant a", "tenant b"]) expect(tok.encode(text, { specials, remember })).toEqual(fresh.encode(text, { specials }));
  });

  test("skipSpecial drops special tokens in decode and streaming", () => {
    const ids = tok.encode("<|im_start|>assistant\nSure!<|im_end|>", { specials: true });
    expect(tok.decode(ids, { skipSpecial: true })).toBe("assistant\nSure!");
    const stream = tok.createStreamDecoder({ skipSpecial: true });
    expect(ids.map((id) => stream.push(id)).join("") + stream.flush()).toBe("assistant\nSure!");
  });

  test("decode rejects ids outside the vocabulary", () => {
    expect(() => tok.decode([49152])).toThrow(RangeError);
    expect(() => tok.decode([-1])).toThrow(/not in the vocabulary/);
    expect(() => tok.createStreamDecoder().push(1.5)).toThrow(RangeError);
  });

  describe("chat template", () => {
    const modelTemplate = () => new ChatTemplate(tok.chatTemplate, { bosToken: tok.bosToken, eosToken: tok.eosToken });

    test("is the model's own", () => {
      expect(tok.chatTemplate).toBe(fx.chat_template);
      expect(modelTemplate().isFallback).toBe(false);
      expect(modelTemplate().supportsTools).toBe(false);
    });

    for (const key of ["chat_example", "chat_example_default_system"] as const) {
      test(`renders ${key} exactly as transformers`, () => {
        const ex = fx[key];
        expect(modelTemplate().render({ messages: ex.messages, addGenerationPrompt: ex.add_generation_prompt })).toBe(ex.rendered);
      });
    }

    test("content parts are joined for a template that reads strings", () => {
      const parts = [{ type: "text", text: "Hello" }, { type: "text", text: "there" }];
      const rendered = modelTemplate().render({ messages: [{ role: "system", content: "S" }, { role: "user", content: parts }] });
      expect(rendered).toBe("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHello\nthere<|im_end|>\n");
    });
  });
});

const withLlamaCpp = hasModel && existsSync(LLAMA_CPP_FIXTURE);
describe.if(withLlamaCpp)("SmolLM2 tokenizer vs llama.cpp", () => {
  const tok = smol;
  const fx = withLlamaCpp ? readJson<{ cases: Case[] }>(LLAMA_CPP_FIXTURE) : undefined!;

  test("ids equal llama.cpp's for every case", () => {
    const mismatches = fx.cases
      .filter((c) => JSON.stringify(tok.encode(c.text, { specials: true })) !== JSON.stringify(c.ids))
      .map((c) => c.text);
    expect(mismatches).toEqual([]);
  });

  test("decode equals llama.cpp's detokenize", () => {
    for (const c of fx.cases) expect(tok.decode(c.ids)).toBe(c.decoded);
  });
});

/** A tiny SentencePiece-style ("llama") GGUF vocabulary, enough to check merges, ▁ and byte fallback. */
function tinySentencePiece(): GgufHeader {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  const words: [string, number][] = [
    ["▁", -100], ["h", -100], ["e", -100], ["l", -100], ["o", -100],
    ["he", -1], ["ll", -2], ["llo", -3], ["hello", -4], ["▁hello", -5], ["▁h", -6],
  ];
  const scores = tokens.map(() => 0);
  for (const [word, score] of words) {
    tokens.push(word);
    types.push(1);
    scores.push(score);
  }
  const metadata = new Map<string, GgufValue>([
    ["tokenizer.ggml.model", "llama"],
    ["tokenizer.ggml.tokens", tokens],
    ["tokenizer.ggml.token_type", types],
    ["tokenizer.ggml.scores", scores],
    ["tokenizer.ggml.bos_token_id", 1],
    ["tokenizer.ggml.eos_token_id", 2],
    ["tokenizer.ggml.unknown_token_id", 0],
  ]);
  return { path: "tiny-spm.gguf", version: 3, fileSize: 0, alignment: 32, metadata, tensors: [], dataOffset: 0 };
}

describe("SentencePiece-style GGUF vocabulary", () => {
  const tok = tokenizerFromGguf(tinySentencePiece());
  const id = (t: string) => tok.tokenToId(t)!;

  test("score-ranked merges, a prepended ▁, byte fallback", () => {
    expect(tok.encode("hello")).toEqual([id("▁hello")]);
    expect(tok.encode("hello hi")).toEqual([id("▁hello"), id("▁h"), id("<0x69>")]);
    expect(tok.decode(tok.encode("hello hi"))).toBe("hello hi");
  });

  test("special tokens, bos and eos", () => {
    expect(tok.encode("<s>hello", { specials: true })).toEqual([1, id("▁hello")]);
    expect([tok.bosId, tok.eosId, tok.addBos]).toEqual([1, 2, true]);
    expect(tok.decode([1, id("▁hello"), 2], { skipSpecial: true })).toBe("hello");
  });

  test("streaming drops the leading space and waits for multi-byte characters", () => {
    const ids = tok.encode("é");
    expect(ids).toEqual([id("▁"), id("<0xC3>"), id("<0xA9>")]);
    const stream = tok.createStreamDecoder();
    expect(ids.map((i) => stream.push(i))).toEqual(["", "", "é"]);
    expect(tok.decode(ids)).toBe("é");
  });
});

describe("Hugging Face tokenizer.json + tokenizer_config.json", () => {
  const tok = tokenizerFromHuggingFace(
    {
      added_tokens: [
        { id: 0, content: "<unk>", special: true },
        { id: 1, content: "<s>", special: true, normalized: false },
        { id: 2, content: "</s>", special: true, normalized: false },
        { id: 9, content: "<tool>", special: false, normalized: false }, // beyond the model vocab, like Qwen's
      ],
      normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
      pre_tokenizer: null,
      post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }] },
      decoder: {
        type: "Sequence",
        decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
      },
      model: {
        type: "BPE",
        vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, h: 4, i: 5, "▁h": 6, "▁hi": 7 },
        merges: [["▁", "h"], ["▁h", "i"]],
        unk_token: "<unk>",
        byte_fallback: true,
      },
    },
    { bos_token: "<s>", eos_token: { content: "</s>" }, chat_template: [{ name: "tool_use", template: "U" }, { name: "default", template: "T" }] },
  );

  test("settings from tokenizer_config and the post-processor", () => {
    expect([tok.bosId, tok.eosId, tok.addBos, tok.chatTemplate, tok.vocabSize]).toEqual([1, 2, true, "T", 10]);
    expect(tok.idToToken(9)).toBe("<tool>");
    expect(tok.tokenToId("<tool>")).toBe(9);
  });

  test("non-special added tokens always match; special ones only when asked", () => {
    expect(tok.encode("hi<tool>hi")).toEqual([7, 9, 7]);
    expect(tok.encode("<s>hi")).toEqual([3, 0, 0, 0, 4, 5]); // as text: "<", "s", ">" are unknown, no bytes to fall back on
    expect(tok.encode("<s>hi", { specials: true })).toEqual([1, 7]);
    expect(tok.decode([7, 9, 7])).toBe("hi<tool> hi");
  });
});

describe("chat template helpers", () => {
  const toolTemplate =
    "{%- if tools %}{{ tools | tojson(indent=2) }}\n{% endif -%}" +
    "{%- for m in messages %}{{ m.role }}: {% if m.content is string %}{{ m.content }}{% elif m.content %}" +
    "{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endif %}" +
    "{%- if m.tool_calls %}{% for c in m.tool_calls %} call {{ c.function.name }}{{ c.function.arguments | tojson(sort_keys=true) }}{% endfor %}{% endif %}" +
    // A newline after a block tag is trimmed (HF renders with trim_blocks), so it is printed.
    "{%- if m.tool_call_id %} ({{ m.tool_call_id }}){% endif %}{{ '\\n' }}{% endfor %}" +
    "{%- if add_generation_prompt %}{{ bos_token }}>{% endif %}";
  const template = new ChatTemplate(toolTemplate, { bosToken: "<s>" });

  test("tools, tool calls with JSON-string arguments, tool results, content parts", () => {
    const rendered = template.render({
      messages: [
        { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
        { role: "assistant", content: null, tool_calls: [{ type: "function", function: { name: "f", arguments: '{"y":2,"x":1}' } }] },
        { role: "tool", content: "42", tool_call_id: "call_1" },
      ],
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
      addGenerationPrompt: true,
    });
    expect(template.supportsTools).toBe(true);
    expect(rendered).toBe(
      '[\n  {\n    "type": "function",\n    "function": {\n      "name": "f",\n      "parameters": {\n        "type": "object"\n      }\n    }\n  }\n]\n' +
        'user: [a][b]\nassistant:  call f{"x": 1, "y": 2}\ntool: 42 (call_1)\n<s>>',
    );
  });

  test("raise_exception surfaces as a ChatTemplateError with the template's message", () => {
    const strict = new ChatTemplate("{{ raise_exception('roles must alternate') }}");
    expect(() => strict.render({ messages: [] })).toThrow(ChatTemplateError);
    expect(() => strict.render({ messages: [] })).toThrow(/roles must alternate/);
  });

  test("strftime_now is available", () => {
    const dated = new ChatTemplate("{{ strftime_now('%Y') }}");
    expect(dated.render({ messages: [] })).toBe(String(new Date().getFullYear()));
  });

  test("a syntax error is a ChatTemplateError", () => {
    expect(() => new ChatTemplate("{% for %}")).toThrow(ChatTemplateError);
  });

  test("falls back to ChatML only when the model has no template", () => {
    const fallback = new ChatTemplate(undefined);
    expect(fallback.isFallback).toBe(true);
    expect(fallback.render({ messages: [{ role: "user", content: "Hi" }], addGenerationPrompt: true })).toBe(
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
  });
});
