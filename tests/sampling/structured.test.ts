// Structured output without the model: which schemas are refused and why, the recognizer
// against ajv on hand-written texts, the token masks against a token-by-token check over the
// whole SmolLM2 vocabulary, and random walks through the masks whose outputs ajv validates.
import { beforeAll, describe, expect, test } from "bun:test";
import Ajv from "ajv";
import { loadTokenizer } from "../../shared/tokenizer/load-tokenizer.ts";
import type { Tokenizer } from "../../shared/tokenizer/tokenizer.ts";
import { defaultModelPath } from "../../shared/paths.ts";
import {
  checkSchema, compileSchema, createJsonConstraint, type JsonConstraint, SchemaError, TokenVocabulary, validateSchemaSupport,
} from "../../shared/engine/structured/index.ts";
import { advance, canEnd, distanceToEnd, initialState, type State, stateKey, stepState } from "../../shared/engine/structured/recognizer.ts";
import { rng } from "./reference.ts";

const ajv = new Ajv({ strict: false });
const utf8 = new TextEncoder();
let tok: Tokenizer;
let V: number;
beforeAll(() => {
  tok = loadTokenizer(defaultModelPath());
  V = tok.vocabSize;
});

/** Whether the recognizer takes `text` as a complete value of `schema`. */
function recognizes(schema: unknown, text: string): boolean {
  const s = advance(initialState(compileSchema(schema)), utf8.encode(text));
  return s.length > 0 && canEnd(s);
}

/** Whether the recognizer takes `text` as a complete value of `schema` followed by `suffix`. */
function recognizesWith(schema: unknown, suffix: string, text: string): boolean {
  const s = advance(initialState(compileSchema(schema), utf8.encode(suffix)), utf8.encode(text));
  return s.length > 0 && canEnd(s);
}

const PERSON = {
  type: "object",
  properties: { name: { type: "string", maxLength: 12 }, age: { type: "integer" }, tags: { type: "array", items: { enum: ["a", "b"] }, maxItems: 2 } },
  required: ["name", "age"],
  additionalProperties: false,
};

describe("schema support", () => {
  test("unsupported keywords are listed by name and path, never ignored", () => {
    const schema = {
      type: "object",
      properties: { zip: { type: "string", pattern: "^[0-9]+$" }, n: { type: "integer", minimum: 0 }, at: { type: "string", format: "date-time" } },
      patternProperties: { "^x": {} },
      if: { required: ["zip"] },
    };
    expect(validateSchemaSupport(schema).sort()).toEqual(
      ["pattern (at #/properties/zip)", "minimum (at #/properties/n)", "format (at #/properties/at)", "patternProperties (at #)", "if (at #)"].sort(),
    );
    expect(() => compileSchema(schema)).toThrow(SchemaError);
    try {
      compileSchema(schema);
    } catch (e) {
      expect((e as Error).message).toMatch(/^unsupported JSON Schema keywords: .*pattern \(at #\/properties\/zip\)/);
      expect((e as SchemaError).unsupported).toHaveLength(5);
    }
    expect(validateSchemaSupport({ oneOf: [{ type: "integer" }, { type: "number" }] })).toEqual(["oneOf whose alternatives can match the same value (at #)"]);
    expect(validateSchemaSupport({ allOf: [{ type: "string" }, { maxLength: 3 }] })).toHaveLength(1);
    expect(validateSchemaSupport({ type: "array", items: [{ type: "string" }] })).toEqual(["items as a list (at #)"]);
    expect(validateSchemaSupport({ $ref: "https://example.com/s.json" })).toHaveLength(1);
  });

  test("invalid schemas are reported as invalid, with where", () => {
    const invalid = (s: unknown) => checkSchema(s).invalid;
    expect(invalid({ type: "strin" })).toEqual(['#/type "strin" is not a JSON Schema type']);
    expect(invalid({ type: "object", required: "a" })[0]).toMatch(/required must be a list/);
    expect(invalid({ type: "array", minItems: -1 })[0]).toMatch(/minItems must be a non-negative integer/);
    expect(invalid({ type: "string", minLength: 5, maxLength: 2 })[0]).toMatch(/minLength 5 > maxLength 2/);
    expect(invalid({ $ref: "#/$defs/missing" })[0]).toMatch(/does not resolve/);
    expect(invalid({ type: "object", required: ["x"], additionalProperties: false })[0]).toMatch(/required property "x" is not allowed/);
    expect(invalid({ type: "string", enum: [1, 2] })[0]).toMatch(/no value of #\/enum satisfies/);
    expect(invalid({ enum: [] })[0]).toMatch(/enum must be a non-empty array/);
    expect(() => compileSchema({ type: "strin" })).toThrow(/invalid JSON Schema/);
  });

  test("supported shapes compile: type lists, disjoint oneOf, one-element allOf, recursive $ref, $defs, annotations", () => {
    const tree = { $defs: { node: { type: "object", properties: { v: { type: "integer" }, kids: { type: "array", items: { $ref: "#/$defs/node" } } }, required: ["v"] } }, $ref: "#/$defs/node" };
    for (const s of [
      { type: ["string", "null"] },
      { oneOf: [{ type: "string" }, { type: "integer" }, { type: "null" }] },
      { allOf: [{ type: "object", title: "T", description: "d" }] },
      tree,
      { type: "object", properties: { x: { const: { a: [1, "b"] } } } },
    ]) expect(checkSchema(s)).toEqual({ unsupported: [], invalid: [] });
    expect(recognizes(tree, '{"v": 1, "kids": [{"v": 2, "kids": []}, {"v": 3}]}')).toBe(true);
  });
});

describe("the recognizer agrees with ajv", () => {
  const cases: [unknown, string[]][] = [
    [PERSON, [
      '{"name": "Bo", "age": 3}', '{"name":"Bo","age":-0,"tags":["a","b"]}', '{\n"name": "Bo",\n"age": 3,\n"tags": []\n}',
      '{"age": 3, "name": "Bo"}', '{"name": "Bo"}', '{"name": "Bo", "age": 3.5}', '{"name": "Bo", "age": 3, "x": 1}',
      '{"name": "a very long name", "age": 1}', '{"name": "Bo", "age": 3, "tags": ["a", "b", "a"]}', '{"name": "Bo", "age": 03}',
      '{"name": "Bo",  "age": 3}', '{"name": "Bo", "age": 3} ', ' {"name": "Bo", "age": 3}', '{"name": "Bo", "age": 3,}',
    ]],
    [{ type: "string", minLength: 2, maxLength: 4 }, ['"ab"', '"a"', '"abcd"', '"abcde"', '"\\"\\\\"', '"é€😀"', '"\\u00e9x"', '"\\ud83d"', '"a\nb"', '"\\x"']],
    [{ type: "number" }, ["0", "-1.5e10", "1E+2", "1.", ".5", "01", "-", "1e", "12345678901234567", "3.25"]],
    [{ type: "array", items: { type: ["integer", "null"] }, minItems: 1, maxItems: 3 }, ["[1]", "[]", "[null, 2, 3]", "[1,2,3,4]", "[1.5]", "[ 1 ]"]],
    [{ anyOf: [{ type: "object", properties: { a: { type: "integer" } }, required: ["a"] }, { type: "object", properties: { b: { type: "string" } }, required: ["b"] }] },
      ['{"a": 1}', '{"b": "x"}', '{"a": "x"}', '{"b": 1}', "{}"]],
    [{ enum: ["red", 1, 12, null, true, { k: [1] }] }, ['"red"', "1", "12", "null", "true", '{"k":[1]}', '"blue"', "2", "false"]],
    [{ type: "object" }, ['{"x": [1, {"y": null}], "z": "\\n"}', "{}", "[]", '{"a": tru}']],
  ];
  for (const [schema, texts] of cases) {
    test(`${JSON.stringify(schema).slice(0, 60)}…: accepted texts validate, and every compact valid one is accepted`, () => {
      const validate = ajv.compile(schema as object);
      for (const text of texts) {
        let parsed: unknown;
        let valid = false;
        try {
          parsed = JSON.parse(text);
          valid = validate(parsed) as boolean;
        } catch {}
        const ours = recognizes(schema, text);
        if (ours) expect({ text, valid }).toEqual({ text, valid: true }); // sound: never accepts an invalid text
        // Complete within the generation style: declared order, one whitespace at most, no surrogate escapes.
        const style = !/ {2}|^\s|\s$|\\ud8/.test(text) && !text.startsWith('{"age": 3, "name"') && !/"tags": \["a", "b", "a"\]/.test(text);
        const bounded = !/12345678901234567/.test(text);
        if (valid && style && bounded) expect({ text, ours }).toEqual({ text, ours: true });
      }
    });
  }
});

describe("the shortest way to finish", () => {
  // Breadth-first over bytes (printable ASCII) until the value may end: the reference.
  function searched(state: State): number {
    let level = [state];
    const seen = new Set([stateKey(state)]);
    for (let d = 0; d < 200; d++) {
      if (level.some(canEnd)) return d;
      const next: State[] = [];
      for (const s of level) {
        for (let b = 0x20; b < 0x7f; b++) {
          const t = stepState(s, b);
          if (t.length && !seen.has(stateKey(t))) {
            seen.add(stateKey(t));
            next.push(t);
          }
        }
      }
      level = next;
    }
    return Infinity;
  }

  test("equals a breadth-first search at every byte of several outputs", () => {
    const cases: [unknown, string][] = [
      [PERSON, '{"name": "Bo", "age": 42, "tags": ["a"]}'],
      [{ type: "array", items: { type: "object", properties: { k: { type: "string", minLength: 2 }, v: { enum: ["xy", 7] } }, required: ["k", "v"] }, minItems: 2 }, '[{"k": "ab\\n", "v": "xy"}, {"k": "\\u00e9z", "v": 7}]'],
      [{ type: "object" }, '{"a": [1, {"b": null}], "c": -2.5e3}'],
      [{ anyOf: [{ type: "object", properties: { a: { type: "integer" } }, required: ["a"] }, { type: "string", minLength: 3 }] }, '"abcd"'],
    ];
    for (const [schema, text] of cases) {
      let s = initialState(compileSchema(schema));
      const bytes = utf8.encode(JSON.parse(JSON.stringify(text)));
      for (let i = 0; i <= bytes.length; i++) {
        expect({ at: i, d: distanceToEnd(s) }).toEqual({ at: i, d: searched(s) });
        if (i < bytes.length) s = stepState(s, bytes[i]);
      }
    }
  });
});

let closers: Uint8Array | null = null;
let lengths: Int32Array | null = null;

/**
 * Drives `c` to its limit with random tokens that close nothing (no quote, bracket, brace or
 * end of sequence) while any is allowed; `longest`: among the 8 longest such tokens. Frees `c`.
 */
function closeReluctantly(c: JsonConstraint, maxTokens: number, next: () => number, longest = false): { text: string; ended: boolean } {
  closers ??= Uint8Array.from({ length: V }, (_, id) => (/["\]}]/.test(tok.decode([id])) || tok.eosIds.includes(id) ? 1 : 0));
  lengths ??= Int32Array.from({ length: V }, (_, id) => tok.decode([id]).length);
  const out: number[] = [];
  for (let n = 0; n < maxTokens && !c.ended; n++) {
    const mask = c.allowed(V).toFloat32();
    const open: number[] = [];
    const all: number[] = [];
    for (let i = 0; i < V; i++) if (mask[i]) (closers[i] ? all : open).push(i);
    const pool = open.length ? open : all; // closes only when nothing else is allowed
    if (longest) pool.sort((a, b) => lengths![b] - lengths![a]);
    const id = pool[Math.floor(next() * (longest ? Math.min(8, pool.length) : pool.length))];
    c.accept(id);
    if (!c.ended) out.push(id);
  }
  const ended = c.ended;
  c.free();
  return { text: tok.decode(out), ended };
}

describe("token masks", () => {
  /** The mask by walking the sorted vocabulary equals stepping every token's bytes on its own. */
  function expectMaskExact(c: JsonConstraint) {
    const fast = c.allowedIds();
    const v = TokenVocabulary.of(tok, V);
    const slow = new Uint8Array(V);
    for (let id = 0; id < V; id++) {
      const b = v.bytes[id];
      if (b && !v.eos.includes(id) && c.accepts(b)) slow[id] = 1;
    }
    for (const id of v.eos) slow[id] = fast[id]; // end of sequence is checked below
    expect(fast).toEqual(slow);
  }

  test("equal a token-by-token check over the whole vocabulary, state by state", () => {
    const schema = { type: "object", properties: { s: { type: "string", maxLength: 6 }, n: { type: "number" }, e: { enum: ["x", "xy"] }, o: { type: "object" } }, required: ["s", "n", "e", "o"], additionalProperties: false };
    const c = createJsonConstraint(tok, V, { type: "json_schema", schema });
    // Prefixes that stop inside a bounded string, a number, an enum, a free object's key and value.
    for (const prefix of ['{"s": "ab', 'c", "n": -1.', '5, "e": "x', '", "o": {"k', '": ', "[t"]) {
      for (const id of tok.encode(prefix)) c.accept(id);
      expectMaskExact(c);
    }
    const u = createJsonConstraint(tok, V, { type: "json_object" });
    for (const prefix of ['{"a": "long text w', "ith é"]) {
      for (const id of tok.encode(prefix)) u.accept(id);
      expectMaskExact(u); // an unbounded string: plain tokens in a block plus the walked rest
    }
  });

  test("end of sequence only once the value is complete, and then nothing else", () => {
    const c = createJsonConstraint(tok, V, { type: "json_schema", schema: PERSON });
    const ids = tok.encode('{"name": "Bo", "age": 42}');
    for (const id of ids.slice(0, -1)) {
      c.accept(id);
      expect(tok.eosIds.some((e) => c.allowedIds()[e] === 1)).toBe(false);
    }
    c.accept(ids.at(-1)!);
    expect(c.done).toBe(true);
    const allowed = c.allowedIds();
    expect([...allowed.keys()].filter((i) => allowed[i])).toEqual([...tok.eosIds].sort((a, b) => a - b));
    expect(() => createJsonConstraint(tok, V, { type: "json_schema", schema: PERSON }).accept(tok.eosIds[0])).toThrow(/before the JSON value is complete/);
    expect(() => createJsonConstraint(tok, V, { type: "json_schema", schema: PERSON }).accept(tok.encode("[")[0])).toThrow(/cannot continue/);
  });

  test("a grammar dropped from the cache stays usable by the requests still on it", () => {
    const c = createJsonConstraint(tok, V, { type: "json_schema", schema: { type: "object", properties: { keep: { type: "integer" } }, required: ["keep"] } });
    for (let i = 0; i < 20; i++) createJsonConstraint(tok, V, { type: "json_schema", schema: { type: "array", maxItems: i } }).free();
    for (const id of tok.encode('{"keep": 1}')) {
      c.allowed(V);
      c.accept(id);
    }
    expect(c.done).toBe(true);
    c.free();
    c.free(); // twice is harmless
  });

  test("special tokens other than end of sequence are never allowed", () => {
    const c = createJsonConstraint(tok, V, { type: "json_object" });
    for (const id of tok.encode('{"a": "')) c.accept(id);
    const allowed = c.allowedIds();
    for (let id = 0; id < V; id++) if (tok.isSpecial(id)) expect(allowed[id]).toBe(0);
  });

  test("with a token budget, an output that never chooses to close is closed in time", () => {
    const schema = { type: "object", properties: { a: { type: "array", items: { type: "object", properties: { x: { type: "string" }, y: { type: "integer" } }, required: ["x", "y"] } }, b: { type: "string" } }, required: ["a", "b"] };
    const validate = ajv.compile(schema);
    const next = rng(7);
    for (const maxTokens of [24, 40, 64]) {
      const { text, ended } = closeReluctantly(createJsonConstraint(tok, V, { type: "json_schema", schema }, { maxTokens }), maxTokens, next);
      expect({ maxTokens, text, ended, valid: validate(JSON.parse(text)) }).toEqual({ maxTokens, text, ended: true, valid: true });
    }
  }, 60_000);

  test("near the limit, adversarial outputs are still closed in time: the plan's next token is always allowed", () => {
    // Outputs that open what they can and write the longest tokens they may, under limits the
    // shortest completion measured in bytes would exceed (the budget counts tokens).
    const name = { type: "string", maxLength: 24 };
    const schemas = [
      { type: "object", properties: { name, age: { type: "integer" }, city: name }, required: ["name", "age", "city"], additionalProperties: false },
      {
        $defs: { author: { type: "object", properties: { name }, required: ["name"], additionalProperties: false } },
        type: "object",
        properties: { book: { type: "object", properties: { title: { type: "string", maxLength: 40 }, year: { type: "integer" } }, required: ["title", "year"], additionalProperties: false }, author: { $ref: "#/$defs/author" } },
        required: ["book", "author"],
        additionalProperties: false,
      },
      { type: "object", properties: { items: { type: "array", items: { type: "object", properties: { fruit: { type: "string", maxLength: 15 }, count: { type: "integer" } }, required: ["fruit", "count"], additionalProperties: false }, minItems: 1, maxItems: 3 } }, required: ["items"], additionalProperties: false },
      { type: "object", properties: { a: { anyOf: [{ type: "null" }, { type: "object", properties: { x: name, y: name }, required: ["x", "y"] }] } }, required: ["a"] },
    ];
    const next = rng(11);
    for (const [k, schema] of schemas.entries()) {
      const validate = ajv.compile(schema);
      for (const [maxTokens, longest] of [[20, false], [28, true], [40, true]] as const) {
        const { text, ended } = closeReluctantly(createJsonConstraint(tok, V, { type: "json_schema", schema }, { maxTokens }), maxTokens, next, longest);
        expect({ k, maxTokens, text, ended, valid: ended && validate(JSON.parse(text)) }).toEqual({ k, maxTokens, text, ended: true, valid: true });
      }
    }
  }, 120_000);

  test("a suffix: the value, then the fixed text, then only the end", () => {
    const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"] };
    const c = createJsonConstraint(tok, V, { type: "json_schema", schema, suffix: "}" }, { maxTokens: 12 });
    const ids = tok.encode('{"n": 12}}');
    for (const id of ids.slice(0, -1)) {
      expect(tok.eosIds.some((e) => c.allowedIds()[e] === 1)).toBe(false);
      c.accept(id);
    }
    c.accept(ids.at(-1)!);
    expect(c.done).toBe(true);
    expect(recognizesWith({ type: "integer" }, "}", "12}")).toBe(true);
    expect(recognizesWith({ type: "integer" }, "}", "12")).toBe(false); // a root number needs its suffix
    expect(recognizesWith({ type: "integer" }, "}", "12}}")).toBe(false);
  });

  test("random walks through the masks always end in JSON that validates", () => {
    const schemas: unknown[] = [
      PERSON,
      { type: "array", items: { type: "object", properties: { k: { type: "string", maxLength: 5 }, v: { type: ["number", "boolean", "null"] } }, required: ["k"] }, maxItems: 4 },
      { anyOf: [{ type: "string", minLength: 1, maxLength: 8 }, { type: "integer" }] },
      { type: "object" },
    ];
    const next = rng(2024);
    const structural = Uint8Array.from({ length: V }, (_, id) => (/["{}[\],:0-9]|true|false|null/.test(tok.decode([id])) || tok.eosIds.includes(id) ? 1 : 0));
    let finished = 0;
    for (const schema of schemas) {
      const validate = ajv.compile(schema as object);
      for (let walk = 0; walk < 4; walk++) {
        const c = createJsonConstraint(tok, V, { type: "json_schema", schema });
        const out: number[] = [];
        for (let step = 0; step < 120 && !c.ended; step++) {
          const mask = c.allowedIds();
          const all: number[] = [];
          const closing: number[] = [];
          for (let i = 0; i < V; i++) {
            if (!mask[i]) continue;
            all.push(i);
            if (structural[i]) closing.push(i);
          }
          // Lean towards structure so strings and containers close within the budget.
          const pool = closing.length && next() < 0.7 ? closing : all;
          const id = pool[Math.floor(next() * pool.length)];
          c.accept(id);
          if (!c.ended) out.push(id);
        }
        if (!c.ended) continue;
        finished++;
        const text = tok.decode(out);
        expect({ text, valid: validate(JSON.parse(text)) }).toEqual({ text, valid: true });
      }
    }
    expect(finished).toBeGreaterThanOrEqual(12);
  }, 60_000);
});
