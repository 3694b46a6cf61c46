// A byte-level pushdown recognizer for the grammar of schema.ts. A state is a list of paths
// (alternatives of anyOf stay side by side until the bytes tell them apart); a path is its top
// frame, which links to its parent frames. Frames are immutable, so a state can be stepped down
// many tokens' bytes at once (the mask walk) and reused; each has a key naming everything that
// decides what may follow, which is what the token masks are cached by.
import type { Node } from "./schema.ts";

const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a;
const LBRACE = 0x7b, RBRACE = 0x7d, LBRACK = 0x5b, RBRACK = 0x5d, MINUS = 0x2d, PLUS = 0x2b, DOT = 0x2e;
const MAX_WS = 1;
const MAX_INT_DIGITS = 16, MAX_FRAC_DIGITS = 16, MAX_EXP_DIGITS = 2;
/** Deeper nesting than this is refused (it bounds recursion through refs and any-values). */
const MAX_DEPTH = 64;

const NONE: readonly Frame[] = Object.freeze([]);
const utf8 = new TextEncoder();
const isWs = (b: number) => b === 0x20 || b === 0x0a;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

// The grammar of values the schema leaves open (json_object's values, untyped items).
const ANY: Node = { kind: "any", id: -1 };
const ANY_OBJECT: Node = { kind: "object", id: -2, props: [], extra: ANY };
const ANY_ARRAY: Node = { kind: "array", id: -3, items: ANY, min: 0, max: Infinity };
const ANY_STRING: Node = { kind: "string", id: -4, min: 0, max: Infinity };
const ANY_NUMBER: Node = { kind: "number", id: -5, integer: false };
const ANY_LITERAL: Node = { kind: "literal", id: -6, texts: ["true", "false", "null"].map((t) => utf8.encode(t)) };

export abstract class Frame {
  #key: string | undefined;
  constructor(readonly parent: Frame | null, readonly depth: number) {}

  /** The paths after byte `b` (none: `b` cannot come next). */
  abstract step(b: number): readonly Frame[];
  /** This frame's own part of the key. */
  protected abstract ownKey(): string;

  /**
   * The shortest text that finishes this frame's own part: its value, or for a container waiting
   * for a child, what must follow once the child is complete (the child counts for itself).
   * Null when nothing can (a schema no finite text meets).
   */
  abstract rest(): string | null;

  /** Whether the output may end here: the root value is complete. */
  end(): boolean {
    return false;
  }

  /** The state of this container once the child it is waiting for is complete. */
  afterChild(): Frame {
    throw new Error(`bug: ${this.constructor.name} has no child`);
  }

  get key(): string {
    return (this.#key ??= this.parent ? `${this.ownKey()}<${this.parent.key}` : this.ownKey());
  }
}

class Done extends Frame {
  step(): readonly Frame[] {
    return NONE;
  }
  rest(): string {
    return "";
  }
  override end(): boolean {
    return true;
  }
  protected ownKey(): string {
    return "$";
  }
}

const DONE = new Done(null, 0);

class Root extends Frame {
  /** @param suffix text that must follow the value (e.g. the "}" closing a tool call the prompt opened) */
  constructor(readonly node: Node, readonly started: boolean, readonly suffix: Uint8Array | null = null) {
    super(null, 0);
  }
  step(b: number): readonly Frame[] {
    return this.started ? NONE : startValue(this.node, new Root(this.node, true, this.suffix), b);
  }
  override afterChild(): Frame {
    return this.suffix ? new SuffixFrame(this.suffix, 0) : DONE;
  }
  /** Whether a value that can end here ends the output (no suffix follows). */
  get last(): boolean {
    return this.suffix === null;
  }
  rest(): string | null {
    const tail = this.suffix ? decoder.decode(this.suffix) : "";
    return this.started ? tail : join(shortest(this.node), tail);
  }
  protected ownKey(): string {
    return this.started ? "R1" : "R0";
  }
}

/** The fixed text after the root value, read byte by byte. */
class SuffixFrame extends Frame {
  constructor(readonly text: Uint8Array, readonly pos: number) {
    super(null, 0);
  }
  step(b: number): readonly Frame[] {
    if (this.text[this.pos] !== b) return NONE;
    return [this.pos + 1 === this.text.length ? DONE : new SuffixFrame(this.text, this.pos + 1)];
  }
  rest(): string {
    return decoder.decode(this.text.subarray(this.pos));
  }
  protected ownKey(): string {
    return `X${this.pos}`;
  }
}

/** The root is waiting for this frame's value, and nothing follows it. */
const endsOutput = (parent: Frame | null) => parent instanceof Root && parent.last;

/** The first bytes of a value of `node`, whose container (waiting for it) is `parent`. */
function startValue(node: Node, parent: Frame, b: number): readonly Frame[] {
  const depth = parent.depth + 1;
  if (depth > MAX_DEPTH) return NONE;
  switch (node.kind) {
    case "ref": return node.target ? startValue(node.target, parent, b) : NONE;
    case "union": return dedupe(node.options.flatMap((o) => startValue(o, parent, b)));
    case "object": return b === LBRACE ? [new ObjectFrame(node, parent, depth, Obj.Opened, 0, -1, 0)] : NONE;
    case "array": return b === LBRACK ? [new ArrayFrame(node, parent, depth, Arr.Opened, 0, 0)] : NONE;
    case "string": return b === QUOTE ? [new StringFrame(node, parent, depth, Str.Body, 0, 0, 0)] : NONE;
    case "number": return new NumberFrame(node.integer, parent, depth, Num.Start, 0).step(b);
    case "literal": return new LiteralFrame(node.id, node.texts, parent, depth, 0, node.texts.map((_, i) => i)).step(b);
    case "any":
      if (b === LBRACE) return startValue(ANY_OBJECT, parent, b);
      if (b === LBRACK) return startValue(ANY_ARRAY, parent, b);
      if (b === QUOTE) return startValue(ANY_STRING, parent, b);
      if (b === MINUS || isDigit(b)) return startValue(ANY_NUMBER, parent, b);
      return startValue(ANY_LITERAL, parent, b);
  }
}

const enum Obj { Opened, AfterComma, InKey, AfterKey, AfterColon, InValue, AfterValue }
type ObjectNode = Extract<Node, { kind: "object" }>;
const keyTexts = new WeakMap<ObjectNode, Uint8Array[]>();

class ObjectFrame extends Frame {
  constructor(
    readonly node: ObjectNode,
    parent: Frame | null,
    depth: number,
    readonly phase: Obj,
    /** The first declared property still possible. */
    readonly next: number,
    /** The declared property whose key was just read (-1: a free key). */
    readonly prop: number,
    readonly ws: number,
  ) {
    super(parent, depth);
  }

  #with(phase: Obj, next = this.next, prop = this.prop, ws = 0): ObjectFrame {
    return new ObjectFrame(this.node, this.parent, this.depth, phase, next, prop, ws);
  }

  step(b: number): readonly Frame[] {
    const p = this.phase;
    if (isWs(b) && p !== Obj.InKey && p !== Obj.InValue) return this.ws < MAX_WS ? [this.#with(p, this.next, this.prop, this.ws + 1)] : NONE;
    switch (p) {
      case Obj.Opened:
        if (b === RBRACE) return this.#canClose() ? [this.parent!.afterChild()] : NONE;
        return b === QUOTE ? this.#startKey() : NONE;
      case Obj.AfterComma:
        return b === QUOTE ? this.#startKey() : NONE;
      case Obj.AfterKey:
        return b === COLON ? [this.#with(Obj.AfterColon)] : NONE;
      case Obj.AfterColon: {
        const value = this.prop >= 0 ? this.node.props[this.prop].node : this.node.extra!;
        return startValue(value, this.#with(Obj.InValue), b);
      }
      case Obj.AfterValue:
        if (b === COMMA) return this.#hasMore() ? [this.#with(Obj.AfterComma)] : NONE;
        if (b === RBRACE) return this.#canClose() ? [this.parent!.afterChild()] : NONE;
        return NONE;
      default:
        throw new Error("bug: an object waiting for its child was stepped");
    }
  }

  // Declared properties come in order: the candidates run from `next` to the first required one.
  #startKey(): readonly Frame[] {
    const waiting = this.#with(Obj.InKey);
    if (this.node.props.length === 0) {
      return this.node.extra ? [new StringFrame(ANY_STRING as Extract<Node, { kind: "string" }>, waiting, this.depth + 1, Str.Body, 0, 0, 0)] : NONE;
    }
    const candidates: number[] = [];
    for (let j = this.next; j < this.node.props.length; j++) {
      candidates.push(j);
      if (this.node.props[j].required) break;
    }
    return candidates.length ? [new KeyFrame(keysOf(this.node), waiting, this.depth + 1, 1, candidates)] : NONE;
  }

  #canClose(): boolean {
    for (let j = this.next; j < this.node.props.length; j++) if (this.node.props[j].required) return false;
    return true;
  }

  #hasMore(): boolean {
    return this.node.props.length === 0 || this.next < this.node.props.length;
  }

  rest(): string | null {
    const n = this.node;
    const free = n.props.length === 0;
    switch (this.phase) {
      case Obj.Opened: return free ? "}" : closing(n, this.next, true);
      case Obj.AfterComma: {
        if (free) return join('"":', shortest(n.extra!), "}");
        let best: string | null = null;
        for (let j = this.next; j < n.props.length; j++) {
          best = shorter(best, join(keyText(n, j), ":", shortest(n.props[j].node), closing(n, j + 1, false)));
          if (n.props[j].required) break;
        }
        return best;
      }
      case Obj.InKey: return free ? join(":", shortest(n.extra!), "}") : ""; // a declared key's frame counts its way out
      case Obj.AfterKey: return join(":", this.#valueAndClosing());
      case Obj.AfterColon: return this.#valueAndClosing();
      case Obj.InValue: return this.prop >= 0 ? closing(n, this.prop + 1, false) : "}";
      case Obj.AfterValue: return free ? "}" : closing(n, this.next, false);
    }
  }

  #valueAndClosing(): string | null {
    const n = this.node;
    if (this.prop < 0) return join(shortest(n.extra!), "}");
    return join(shortest(n.props[this.prop].node), closing(n, this.prop + 1, false));
  }

  /** After the key of declared property `j`. */
  afterKey(j: number): Frame {
    return this.#with(Obj.AfterKey, this.next, j);
  }

  override afterChild(): Frame {
    if (this.phase === Obj.InKey) return this.#with(Obj.AfterKey, this.next, -1);
    return this.#with(Obj.AfterValue, this.prop >= 0 ? this.prop + 1 : this.next, -1);
  }

  protected ownKey(): string {
    return `O${this.node.id}.${this.phase}.${this.next}.${this.prop}.${this.ws}`;
  }
}

const shortestOf = new WeakMap<Node, string | null>();
const decoder = new TextDecoder();

/** Concatenation, null if any part is. */
function join(...parts: (string | null)[]): string | null {
  return parts.includes(null) ? null : parts.join("");
}

/** The shorter text (in UTF-8 bytes) of two, either possibly null. */
function shorter(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return utf8Length(b) < utf8Length(a) ? b : a;
}

export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

/** The shortest JSON text of `node` (null when no finite text meets it). */
function shortest(node: Node): string | null {
  if (shortestOf.has(node)) return shortestOf.get(node)!;
  shortestOf.set(node, null); // a reference back to a node being measured adds no shorter way
  let t: string | null;
  switch (node.kind) {
    case "any": t = "0"; break;
    case "number": t = "0"; break;
    case "string": t = `"${"a".repeat(node.min)}"`; break;
    case "literal": t = node.texts.map((x) => decoder.decode(x)).reduce<string | null>(shorter, null); break;
    case "ref": t = node.target ? shortest(node.target) : null; break;
    case "union": t = node.options.map(shortest).reduce<string | null>(shorter, null); break;
    case "array": {
      const item = node.min > 0 ? shortest(node.items) : "";
      t = item === null ? null : `[${new Array(node.min).fill(item).join(",")}]`;
      break;
    }
    case "object": t = join("{", closing(node, 0, true)); break;
  }
  shortestOf.set(node, t);
  return t;
}

/**
 * The most UTF-8 bytes one choice can add to the shortest way out: the longest shortest text of
 * any value of the grammar (entering it, or choosing it among alternatives), with its key.
 */
export function largestChoice(root: Node): number {
  let most = 0;
  const seen = new Set<Node>();
  const visit = (node: Node, key: number) => {
    if (seen.has(node)) return;
    seen.add(node);
    most = Math.max(most, key + utf8Length(shortest(node) ?? ""));
    switch (node.kind) {
      case "ref": if (node.target) visit(node.target, key); break;
      case "union": for (const o of node.options) visit(o, key); break;
      case "array": visit(node.items, 1); break;
      case "object":
        for (const p of node.props) visit(p.node, utf8Length(JSON.stringify(p.name)) + 2);
        if (node.extra) visit(node.extra, 4);
        break;
    }
  };
  visit(root, 0);
  return most;
}

/** What closes an object whose declared properties from `from` on are still to come: the required ones, then "}". */
function closing(node: ObjectNode, from: number, first: boolean): string | null {
  const parts: (string | null)[] = [];
  let comma = !first;
  for (let j = from; j < node.props.length; j++) {
    if (!node.props[j].required) continue;
    parts.push(comma ? "," : "", keyText(node, j), ":", shortest(node.props[j].node));
    comma = true;
  }
  return join(...parts, "}");
}

function keyText(node: ObjectNode, j: number): string {
  return JSON.stringify(node.props[j].name);
}

function keysOf(node: ObjectNode): Uint8Array[] {
  let keys = keyTexts.get(node);
  if (!keys) keyTexts.set(node, (keys = node.props.map((p) => utf8.encode(JSON.stringify(p.name)))));
  return keys;
}

/** Reading a declared property's key (its JSON text, quotes included) among `alive` candidates. */
class KeyFrame extends Frame {
  constructor(readonly texts: Uint8Array[], parent: Frame, depth: number, readonly pos: number, readonly alive: number[]) {
    super(parent, depth);
  }

  step(b: number): readonly Frame[] {
    const next = this.alive.filter((j) => this.texts[j][this.pos] === b);
    if (!next.length) return NONE;
    // A JSON string ends at its closing quote, so no key is a prefix of another.
    const done = next.find((j) => this.texts[j].length === this.pos + 1);
    if (done !== undefined) return [(this.parent as ObjectFrame).afterKey(done)];
    return [new KeyFrame(this.texts, this.parent!, this.depth, this.pos + 1, next)];
  }

  rest(): string | null {
    const obj = this.parent as ObjectFrame;
    let best: string | null = null;
    for (const j of this.alive) {
      best = shorter(best, join(decoder.decode(this.texts[j].subarray(this.pos)), ":", shortest(obj.node.props[j].node), closing(obj.node, j + 1, false)));
    }
    return best;
  }

  protected ownKey(): string {
    return `K${this.pos}.${this.alive.join(",")}`;
  }
}

const enum Arr { Opened, AfterComma, InValue, AfterValue }
type ArrayNode = Extract<Node, { kind: "array" }>;

class ArrayFrame extends Frame {
  constructor(readonly node: ArrayNode, parent: Frame | null, depth: number, readonly phase: Arr, readonly count: number, readonly ws: number) {
    super(parent, depth);
  }

  #with(phase: Arr, count = this.count, ws = 0): ArrayFrame {
    return new ArrayFrame(this.node, this.parent, this.depth, phase, count, ws);
  }

  step(b: number): readonly Frame[] {
    const p = this.phase;
    if (isWs(b) && p !== Arr.InValue) return this.ws < MAX_WS ? [this.#with(p, this.count, this.ws + 1)] : NONE;
    switch (p) {
      case Arr.Opened:
        if (b === RBRACK) return this.node.min === 0 ? [this.parent!.afterChild()] : NONE;
        return this.node.max > 0 ? startValue(this.node.items, this.#with(Arr.InValue), b) : NONE;
      case Arr.AfterComma:
        return startValue(this.node.items, this.#with(Arr.InValue), b);
      case Arr.AfterValue:
        if (b === COMMA) return this.count < this.node.max ? [this.#with(Arr.AfterComma)] : NONE;
        if (b === RBRACK) return this.count >= this.node.min ? [this.parent!.afterChild()] : NONE;
        return NONE;
      default:
        throw new Error("bug: an array waiting for its item was stepped");
    }
  }

  override afterChild(): Frame {
    return this.#with(Arr.AfterValue, this.count + 1);
  }

  rest(): string | null {
    const item = shortest(this.node.items);
    // Items still due after `count`, with their commas, then "]".
    const due = (count: number, first: boolean): string | null => {
      const n = Math.max(0, this.node.min - count);
      if (n === 0) return "]";
      return item === null ? null : `${first ? "" : ","}${new Array(n).fill(item).join(",")}]`;
    };
    switch (this.phase) {
      case Arr.Opened: return due(0, true);
      case Arr.AfterComma: return join(item, due(this.count + 1, false));
      case Arr.InValue: return due(this.count + 1, false);
      case Arr.AfterValue: return due(this.count, false);
    }
  }

  protected ownKey(): string {
    // Counts past both bounds behave alike.
    const bound = Math.max(this.node.min, Number.isFinite(this.node.max) ? this.node.max : 0);
    return `A${this.node.id}.${this.phase}.${Math.min(this.count, bound)}.${this.ws}`;
  }
}

const enum Str { Body, Escape, U1, U2, U2Low, U3, U4 }
type StringNode = Extract<Node, { kind: "string" }>;

// UTF-8: the continuation bytes a lead byte needs, and the range allowed for the first of them
// (which excludes overlong forms and surrogates).
const enum Range { Any, A0BF, x809F, x90BF, x808F }
const RANGES: Record<Range, [number, number]> = {
  [Range.Any]: [0x80, 0xbf], [Range.A0BF]: [0xa0, 0xbf], [Range.x809F]: [0x80, 0x9f], [Range.x90BF]: [0x90, 0xbf], [Range.x808F]: [0x80, 0x8f],
};

/** Continuation bytes and first-byte range after lead byte `b`, or null if `b` cannot lead. */
export function utf8Lead(b: number): [number, Range] | null {
  if (b >= 0xc2 && b <= 0xdf) return [1, Range.Any];
  if (b === 0xe0) return [2, Range.A0BF];
  if (b === 0xed) return [2, Range.x809F];
  if (b >= 0xe1 && b <= 0xef) return [2, Range.Any];
  if (b === 0xf0) return [3, Range.x90BF];
  if (b >= 0xf1 && b <= 0xf3) return [3, Range.Any];
  if (b === 0xf4) return [3, Range.x808F];
  return null;
}

class StringFrame extends Frame {
  constructor(
    readonly node: StringNode,
    parent: Frame | null,
    depth: number,
    readonly phase: Str,
    /** Characters so far (counted only when the schema bounds the length). */
    readonly length: number,
    /** UTF-8 continuation bytes still due, and the range of the next one. */
    readonly need: number,
    readonly range: Range,
  ) {
    super(parent, depth);
  }

  /** Characters plain text may still add here (between characters of the body), else -1. */
  get room(): number {
    if (this.phase !== Str.Body || this.need !== 0) return -1;
    return this.node.max === Infinity ? Infinity : this.node.max - this.length;
  }

  #with(phase: Str, length: number, need = 0, range = Range.Any): StringFrame {
    if (phase === this.phase && length === this.length && need === this.need && range === this.range) return this;
    return new StringFrame(this.node, this.parent, this.depth, phase, length, need, range);
  }

  // One more character, counted only when it matters.
  #counted(): number {
    return this.node.min === 0 && this.node.max === Infinity ? 0 : this.length + 1;
  }

  step(b: number): readonly Frame[] {
    switch (this.phase) {
      case Str.Body: {
        if (this.need > 0) {
          const [lo, hi] = RANGES[this.range];
          return b >= lo && b <= hi ? [this.#with(Str.Body, this.length, this.need - 1)] : NONE;
        }
        if (b === QUOTE) return this.length >= this.node.min ? [this.parent!.afterChild()] : NONE;
        if (this.length >= this.node.max) return NONE;
        if (b === BACKSLASH) return [this.#with(Str.Escape, this.#counted())];
        if (b < 0x20) return NONE;
        if (b < 0x80) return [this.#with(Str.Body, this.#counted())];
        const lead = utf8Lead(b);
        return lead ? [this.#with(Str.Body, this.#counted(), lead[0], lead[1])] : NONE;
      }
      case Str.Escape:
        if (b === 0x75) return [this.#with(Str.U1, this.length)]; // \uXXXX
        return b === QUOTE || b === BACKSLASH || b === 0x2f || b === 0x62 || b === 0x66 || b === 0x6e || b === 0x72 || b === 0x74
          ? [this.#with(Str.Body, this.length)]
          : NONE;
      case Str.U1:
        // \uD800-\uDFFF (surrogate halves) are left out: a lone one is not a character.
        if (b === 0x64 || b === 0x44) return [this.#with(Str.U2Low, this.length)];
        return isHex(b) ? [this.#with(Str.U2, this.length)] : NONE;
      case Str.U2Low:
        return b >= 0x30 && b <= 0x37 ? [this.#with(Str.U3, this.length)] : NONE;
      case Str.U2:
        return isHex(b) ? [this.#with(Str.U3, this.length)] : NONE;
      case Str.U3:
        return isHex(b) ? [this.#with(Str.U4, this.length)] : NONE;
      case Str.U4:
        return isHex(b) ? [this.#with(Str.Body, this.length)] : NONE;
    }
  }

  /** The text after the UTF-8 continuation bytes still due (`need`). */
  rest(): string {
    const chars = Math.max(0, this.node.min - this.length); // the current character is counted already
    const escape = ["", "n", "0000", "000", "000", "00", "0"][this.phase]; // Body, Escape, U1, U2, U2Low, U3, U4
    return `${escape}${"a".repeat(chars)}"`;
  }

  protected ownKey(): string {
    const bound = Number.isFinite(this.node.max) ? this.node.max : this.node.min;
    return `S${this.node.id}.${this.phase}.${this.need}.${this.range}.${Math.min(this.length, bound)}`;
  }
}

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, digits bounded; integers stop before "." and "e".
const enum Num { Start, Minus, Zero, Int, Dot, Frac, E, ESign, Exp }

class NumberFrame extends Frame {
  constructor(readonly integer: boolean, parent: Frame | null, depth: number, readonly state: Num, readonly digits: number) {
    super(parent, depth);
  }

  get accepting(): boolean {
    const s = this.state;
    return s === Num.Zero || s === Num.Int || s === Num.Frac || s === Num.Exp;
  }

  #to(state: Num, digits = 0): readonly Frame[] {
    return [new NumberFrame(this.integer, this.parent, this.depth, state, digits)];
  }

  step(b: number): readonly Frame[] {
    const s = this.state;
    const digit = isDigit(b);
    switch (s) {
      case Num.Start:
        if (b === MINUS) return this.#to(Num.Minus);
        if (digit) return this.#to(b === 0x30 ? Num.Zero : Num.Int, 1);
        return NONE;
      case Num.Minus:
        return digit ? this.#to(b === 0x30 ? Num.Zero : Num.Int, 1) : NONE;
      case Num.Int:
        if (digit) return this.digits < MAX_INT_DIGITS ? this.#to(Num.Int, this.digits + 1) : NONE;
        break;
      case Num.Dot:
        return digit ? this.#to(Num.Frac, 1) : NONE;
      case Num.Frac:
        if (digit) return this.digits < MAX_FRAC_DIGITS ? this.#to(Num.Frac, this.digits + 1) : NONE;
        break;
      case Num.E:
        if (b === PLUS || b === MINUS) return this.#to(Num.ESign);
        return digit ? this.#to(Num.Exp, 1) : NONE;
      case Num.ESign:
        return digit ? this.#to(Num.Exp, 1) : NONE;
      case Num.Exp:
        if (digit) return this.digits < MAX_EXP_DIGITS ? this.#to(Num.Exp, this.digits + 1) : NONE;
        break;
    }
    if (!this.integer && b === DOT && (s === Num.Zero || s === Num.Int)) return this.#to(Num.Dot);
    if (!this.integer && (b === 0x65 || b === 0x45) && (s === Num.Zero || s === Num.Int || s === Num.Frac)) return this.#to(Num.E);
    // Any other byte ends the number and belongs to its container.
    return this.accepting ? this.parent!.afterChild().step(b) : NONE;
  }

  override end(): boolean {
    return this.accepting && endsOutput(this.parent);
  }

  rest(): string {
    return this.accepting ? "" : "0";
  }

  protected ownKey(): string {
    return `N${this.integer ? 1 : 0}.${this.state}.${this.digits}`;
  }
}

/** Matching literal JSON texts (enum, const, true/false/null) among `alive` candidates. */
class LiteralFrame extends Frame {
  constructor(readonly id: number, readonly texts: Uint8Array[], parent: Frame | null, depth: number, readonly pos: number, readonly alive: number[]) {
    super(parent, depth);
  }

  /** Some candidate has been read in full. */
  get complete(): boolean {
    return this.alive.some((i) => this.texts[i].length === this.pos);
  }

  step(b: number): readonly Frame[] {
    const next = this.alive.filter((i) => this.texts[i][this.pos] === b);
    const out: Frame[] = [];
    if (next.length) {
      // Ended by its own last byte, unless a longer candidate goes on (enum [1, 12]).
      if (next.every((i) => this.texts[i].length === this.pos + 1)) out.push(this.parent!.afterChild());
      else out.push(new LiteralFrame(this.id, this.texts, this.parent, this.depth, this.pos + 1, next));
    }
    if (this.pos > 0 && this.complete) out.push(...this.parent!.afterChild().step(b));
    return out.length > 1 ? dedupe(out) : out;
  }

  override end(): boolean {
    return this.pos > 0 && this.complete && endsOutput(this.parent);
  }

  rest(): string | null {
    return this.alive.map((i) => decoder.decode(this.texts[i].subarray(this.pos))).reduce<string | null>(shorter, null);
  }

  protected ownKey(): string {
    return `L${this.id}.${this.pos}.${this.alive.join(",")}`;
  }
}

function dedupe(frames: readonly Frame[]): readonly Frame[] {
  if (frames.length < 2) return frames;
  const seen = new Map<string, Frame>();
  for (const f of frames) if (!seen.has(f.key)) seen.set(f.key, f);
  return seen.size === frames.length ? frames : [...seen.values()];
}

/** A recognizer state: the live paths (empty means the bytes so far cannot be completed). */
export type State = readonly Frame[];

/** The state before any byte; `suffix` must follow the value. */
export function initialState(root: Node, suffix: Uint8Array | null = null): State {
  return [new Root(root, false, suffix && suffix.length ? suffix : null)];
}

/** The state after byte `b`. */
export function stepState(state: State, b: number): State {
  if (state.length === 1) return state[0].step(b);
  return dedupe(state.flatMap((f) => f.step(b)));
}

/** The state after `bytes` (empty if any byte is refused). */
export function advance(state: State, bytes: Uint8Array): State {
  let s = state;
  for (let i = 0; i < bytes.length && s.length; i++) s = stepState(s, bytes[i]);
  return s;
}

/** The output may end here (end of sequence allowed). */
export function canEnd(state: State): boolean {
  return state.some((f) => f.end());
}

/** The value is complete and nothing but the end may follow. */
export function isComplete(state: State): boolean {
  return state.length > 0 && state.every((f) => f instanceof Done);
}

/**
 * The shortest way to complete the value from `state` (with no whitespace): UTF-8 continuation
 * bytes still due, then text; null if there is none. Each frame's own way out, joined up the
 * stack, for the path whose way is shortest.
 */
export function completion(state: State): { bytes: number; text: string } | null {
  let best: { bytes: number; text: string } | null = null;
  for (const top of state) {
    const parts: (string | null)[] = [];
    for (let f: Frame | null = top; f; f = f.parent) parts.push(f.rest());
    const text = join(...parts);
    if (text === null) continue;
    const bytes = top instanceof StringFrame ? top.need : 0;
    if (!best || bytes + utf8Length(text) < best.bytes + utf8Length(best.text)) best = { bytes, text };
  }
  return best;
}

/** The fewest bytes that complete the value from `state` (0 when it may end now; Infinity if none). */
export function distanceToEnd(state: State): number {
  const c = completion(state);
  return c ? c.bytes + utf8Length(c.text) : Infinity;
}

export function stateKey(state: State): string {
  return state.length === 1 ? state[0].key : state.map((f) => f.key).sort().join("|");
}

/**
 * When the single path is inside a string between characters: how many more characters plain
 * text may add (Infinity if unbounded). Else -1. Plain text never changes such a state except
 * for the count, which matters only to a bounded string.
 */
export function plainRoom(state: State): number {
  return state.length === 1 && state[0] instanceof StringFrame ? state[0].room : -1;
}
