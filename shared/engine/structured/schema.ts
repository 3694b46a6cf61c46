// JSON Schema → the small value grammar the recognizer runs. Only keywords whose meaning the
// grammar enforces exactly are accepted; any other keyword is reported by name and path (never
// ignored), and a schema that is not valid JSON Schema is reported as invalid.
//
// Supported: type (one or a list), properties, required, additionalProperties, items, minItems,
// maxItems, enum, const, anyOf, oneOf (when its alternatives cannot match the same value),
// allOf with one subschema, $ref to "#" or "#/$defs/…" / "#/definitions/…", minLength,
// maxLength, and annotations (title, description, default, examples, …).
// Generation choices (each output still validates): declared properties are written in their
// declared order (optional ones may be skipped); an object with declared properties gets no
// others; at most one whitespace character between tokens; numbers have at most 16 integer,
// 16 fraction and 2 exponent digits.

export type Node =
  | { kind: "any"; id: number }
  | { kind: "object"; id: number; props: Prop[]; extra: Node | null }
  | { kind: "array"; id: number; items: Node; min: number; max: number }
  | { kind: "string"; id: number; min: number; max: number }
  | { kind: "number"; id: number; integer: boolean }
  /** Literal JSON texts: enum, const, booleans, null. */
  | { kind: "literal"; id: number; texts: Uint8Array[] }
  | { kind: "union"; id: number; options: Node[] }
  | { kind: "ref"; id: number; target: Node | null };

export type Prop = { name: string; node: Node; required: boolean };

export class SchemaError extends Error {
  override name = "SchemaError";
  constructor(readonly unsupported: string[], readonly invalid: string[]) {
    super(
      [
        unsupported.length ? `unsupported JSON Schema keywords: ${unsupported.join(", ")}` : "",
        invalid.length ? `invalid JSON Schema: ${invalid.join("; ")}` : "",
      ].filter(Boolean).join("; "),
    );
  }
}

const ANNOTATIONS = new Set([
  "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$anchor",
]);
const SUPPORTED = new Set([
  "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const",
  "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "minLength", "maxLength",
]);
const TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);
const utf8 = new TextEncoder();

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
const escapePointer = (k: string) => k.replaceAll("~", "~0").replaceAll("/", "~1");

/**
 * The keywords of `schema` the grammar cannot enforce, each with where it is, e.g.
 * `pattern (at #/properties/zip)`. Empty when the schema is fully supported.
 * @example validateSchemaSupport({ type: "string", format: "email" }) // ["format (at #)"]
 */
export function validateSchemaSupport(schema: unknown): string[] {
  return checkSchema(schema).unsupported;
}

/** Unsupported keywords and invalid parts of `schema`, each with its JSON pointer. */
export function checkSchema(schema: unknown): { unsupported: string[]; invalid: string[] } {
  const c = new Compiler(schema);
  c.compile();
  return { unsupported: c.unsupported, invalid: c.invalid };
}

/**
 * The grammar for `schema`; throws SchemaError listing every unsupported keyword and invalid part.
 * @example compileSchema({ type: "object", properties: { a: { type: "integer" } }, required: ["a"] })
 */
export function compileSchema(schema: unknown): Node {
  const c = new Compiler(schema);
  const node = c.compile();
  if (c.unsupported.length || c.invalid.length) throw new SchemaError(c.unsupported, c.invalid);
  return node;
}

/** `{"type": "json_object"}`: any JSON object. */
export function anyObjectGrammar(): Node {
  return { kind: "object", id: 0, props: [], extra: { kind: "any", id: 1 } };
}

class Compiler {
  readonly unsupported: string[] = [];
  readonly invalid: string[] = [];
  #nextId = 0;
  readonly #refs = new Map<string, Node & { kind: "ref" }>();

  constructor(readonly root: unknown) {}

  compile(): Node {
    const node = this.#node(this.root, "#");
    for (const [pointer, ref] of this.#refs) {
      const target = resolvePointer(this.root, pointer);
      if (target === undefined) this.invalid.push(`$ref ${JSON.stringify(pointer)} does not resolve`);
      else ref.target = this.#node(target, pointer);
    }
    return node;
  }

  #id(): number {
    return this.#nextId++;
  }

  #node(s: unknown, at: string): Node {
    if (s === true) return { kind: "any", id: this.#id() };
    if (s === false) {
      this.unsupported.push(`false schema (at ${at})`);
      return { kind: "any", id: this.#id() };
    }
    if (!isObject(s)) {
      this.invalid.push(`${at} must be an object or a boolean`);
      return { kind: "any", id: this.#id() };
    }
    for (const k of Object.keys(s)) {
      if (SUPPORTED.has(k) || ANNOTATIONS.has(k)) continue;
      // false/empty values of these keywords are their defaults: nothing to enforce.
      if ((k === "uniqueItems" && s[k] === false) || (k === "nullable" && s[k] === false)) continue;
      this.unsupported.push(`${k} (at ${at})`);
    }
    if ("$defs" in s && !isObject(s.$defs)) this.invalid.push(`${at}/$defs must be an object`);
    if ("definitions" in s && !isObject(s.definitions)) this.invalid.push(`${at}/definitions must be an object`);

    if ("$ref" in s) return this.#ref(s, at);
    if ("allOf" in s) {
      if (!Array.isArray(s.allOf) || s.allOf.length === 0) this.invalid.push(`${at}/allOf must be a non-empty array`);
      else if (s.allOf.length > 1 || Object.keys(s).some((k) => !ANNOTATIONS.has(k) && k !== "allOf" && k !== "$defs" && k !== "definitions")) {
        this.unsupported.push(`allOf with more than one subschema or beside other keywords (at ${at})`);
      } else return this.#node(s.allOf[0], `${at}/allOf/0`);
    }
    for (const key of ["anyOf", "oneOf"] as const) {
      if (!(key in s)) continue;
      const list = s[key];
      if (!Array.isArray(list) || list.length === 0) {
        this.invalid.push(`${at}/${key} must be a non-empty array`);
        continue;
      }
      if (Object.keys(s).some((k) => !ANNOTATIONS.has(k) && k !== key && k !== "$defs" && k !== "definitions")) {
        this.unsupported.push(`${key} beside other keywords (at ${at})`);
      }
      const options = list.map((o, i) => this.#node(o, `${at}/${key}/${i}`));
      if (key === "oneOf" && !disjoint(options)) this.unsupported.push(`oneOf whose alternatives can match the same value (at ${at})`);
      return { kind: "union", id: this.#id(), options };
    }

    const base = this.#typed(s, at);
    if (!("enum" in s) && !("const" in s)) return base;
    let values: unknown[] = [];
    if ("const" in s) values = [s.const];
    else if (!Array.isArray(s.enum) || s.enum.length === 0) this.invalid.push(`${at}/enum must be a non-empty array`);
    else values = s.enum;
    const fitting = values.filter((v) => conforms(v, base));
    if (values.length && !fitting.length) this.invalid.push(`no value of ${at}/${"const" in s ? "const" : "enum"} satisfies the rest of the schema`);
    return { kind: "literal", id: this.#id(), texts: fitting.map((v) => utf8.encode(JSON.stringify(v))) };
  }

  #ref(s: Json, at: string): Node {
    const ref = s.$ref;
    if (Object.keys(s).some((k) => !ANNOTATIONS.has(k) && k !== "$ref" && k !== "$defs" && k !== "definitions")) {
      this.unsupported.push(`$ref beside other keywords (at ${at})`);
    }
    if (typeof ref !== "string" || !(ref === "#" || ref.startsWith("#/"))) {
      this.unsupported.push(`$ref other than a local "#/…" pointer (at ${at})`);
      return { kind: "any", id: this.#id() };
    }
    let node = this.#refs.get(ref);
    if (!node) this.#refs.set(ref, (node = { kind: "ref", id: this.#id(), target: null }));
    return node;
  }

  #typed(s: Json, at: string): Node {
    let types: string[];
    if (!("type" in s)) {
      const inferred = inferTypes(s);
      if (!inferred) return { kind: "any", id: this.#id() };
      types = inferred;
    }
    else if (typeof s.type === "string") types = [s.type];
    else if (Array.isArray(s.type) && s.type.length && s.type.every((t) => typeof t === "string")) types = s.type as string[];
    else {
      this.invalid.push(`${at}/type must be a type name or a non-empty list of them`);
      types = [];
    }
    const bad = types.filter((t) => !TYPES.has(t));
    if (bad.length) this.invalid.push(`${at}/type ${bad.map((t) => JSON.stringify(t)).join(", ")} is not a JSON Schema type`);
    const nodes = types.filter((t) => TYPES.has(t)).map((t) => this.#ofType(t, s, at));
    if (nodes.length === 0) return { kind: "any", id: this.#id() };
    return nodes.length === 1 ? nodes[0] : { kind: "union", id: this.#id(), options: nodes };
  }

  #ofType(type: string, s: Json, at: string): Node {
    switch (type) {
      case "object": return this.#object(s, at);
      case "array": {
        const min = this.#count(s, "minItems", at, 0);
        const max = this.#count(s, "maxItems", at, Infinity);
        if (min > max) this.invalid.push(`${at}: minItems ${min} > maxItems ${max}`);
        const items = "items" in s ? (Array.isArray(s.items) ? this.#tuple(at) : this.#node(s.items, `${at}/items`)) : { kind: "any" as const, id: this.#id() };
        return { kind: "array", id: this.#id(), items, min, max };
      }
      case "string": {
        const min = this.#count(s, "minLength", at, 0);
        const max = this.#count(s, "maxLength", at, Infinity);
        if (min > max) this.invalid.push(`${at}: minLength ${min} > maxLength ${max}`);
        return { kind: "string", id: this.#id(), min, max };
      }
      case "number":
      case "integer": return { kind: "number", id: this.#id(), integer: type === "integer" };
      case "boolean": return { kind: "literal", id: this.#id(), texts: [utf8.encode("true"), utf8.encode("false")] };
      default: return { kind: "literal", id: this.#id(), texts: [utf8.encode("null")] };
    }
  }

  #tuple(at: string): Node {
    this.unsupported.push(`items as a list (at ${at})`);
    return { kind: "any", id: this.#id() };
  }

  #count(s: Json, key: string, at: string, fallback: number): number {
    if (!(key in s)) return fallback;
    if (!isCount(s[key])) {
      this.invalid.push(`${at}/${key} must be a non-negative integer`);
      return fallback;
    }
    return s[key] as number;
  }

  #object(s: Json, at: string): Node {
    const props: Prop[] = [];
    if ("properties" in s && !isObject(s.properties)) this.invalid.push(`${at}/properties must be an object`);
    const declared = isObject(s.properties) ? s.properties : {};
    let required: string[] = [];
    if ("required" in s) {
      if (!Array.isArray(s.required) || !s.required.every((r) => typeof r === "string")) this.invalid.push(`${at}/required must be a list of property names`);
      else required = s.required as string[];
    }
    const additional = s.additionalProperties;
    if ("additionalProperties" in s && typeof additional !== "boolean" && !isObject(additional)) {
      this.invalid.push(`${at}/additionalProperties must be a boolean or a schema`);
    }
    for (const [name, sub] of Object.entries(declared)) {
      props.push({ name, node: this.#node(sub, `${at}/properties/${escapePointer(name)}`), required: required.includes(name) });
    }
    for (const name of new Set(required)) {
      if (name in declared) continue;
      if (additional === false) this.invalid.push(`${at}: required property ${JSON.stringify(name)} is not allowed by additionalProperties: false`);
      else props.push({ name, node: isObject(additional) ? this.#node(additional, `${at}/additionalProperties`) : { kind: "any", id: this.#id() }, required: true });
    }
    // Free keys only where no property is declared; a declared set is written alone (still valid).
    let extra: Node | null = null;
    if (props.length === 0 && additional !== false) {
      extra = isObject(additional) ? this.#node(additional, `${at}/additionalProperties`) : { kind: "any", id: this.#id() };
    } else if (props.length && isObject(additional)) {
      this.#node(additional, `${at}/additionalProperties`); // checked, though never generated
    }
    return { kind: "object", id: this.#id(), props, extra };
  }
}

// The types a schema without "type" constrains to, from the keywords it uses; null: any value.
function inferTypes(s: Json): string[] | null {
  const has = (...k: string[]) => k.some((key) => key in s);
  const types: string[] = [];
  if (has("properties", "required", "additionalProperties")) types.push("object");
  if (has("items", "minItems", "maxItems")) types.push("array");
  if (has("minLength", "maxLength")) types.push("string");
  return types.length ? types : null;
}

function resolvePointer(root: unknown, pointer: string): unknown {
  if (pointer === "#") return root;
  let at: unknown = root;
  for (const raw of pointer.slice(2).split("/")) {
    const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
    if (!isObject(at) && !Array.isArray(at)) return undefined;
    at = (at as Record<string, unknown>)[key];
    if (at === undefined) return undefined;
  }
  return at;
}

type JsonType = "object" | "array" | "string" | "number" | "boolean" | "null";

function typeOf(v: unknown): JsonType {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v as JsonType;
}

/** The JSON types a node can produce (integer counts as number); null for "anything". */
function typesOf(node: Node, seen = new Set<Node>()): Set<JsonType> | null {
  if (seen.has(node)) return new Set();
  seen.add(node);
  switch (node.kind) {
    case "any": return null;
    case "object": return new Set(["object"]);
    case "array": return new Set(["array"]);
    case "string": return new Set(["string"]);
    case "number": return new Set(["number"]);
    case "literal": return new Set(node.texts.map((t) => typeOf(JSON.parse(new TextDecoder().decode(t)))));
    case "ref": return node.target ? typesOf(node.target, seen) : null;
    case "union": {
      const all = new Set<JsonType>();
      for (const o of node.options) {
        const t = typesOf(o, seen);
        if (!t) return null;
        for (const x of t) all.add(x);
      }
      return all;
    }
  }
}

// oneOf equals anyOf when no two alternatives produce the same JSON type. Refs resolve later,
// so an alternative that is a ref counts as overlapping.
function disjoint(options: Node[]): boolean {
  const seen = new Set<JsonType>();
  for (const o of options) {
    const t = o.kind === "ref" ? null : typesOf(o);
    if (!t) return false;
    for (const x of t) {
      if (seen.has(x)) return false;
      seen.add(x);
    }
  }
  return true;
}

/** Whether `value` is one the node's grammar could produce (for filtering enum values). */
export function conforms(value: unknown, node: Node): boolean {
  switch (node.kind) {
    case "any": return true;
    case "ref": return node.target ? conforms(value, node.target) : true;
    case "union": return node.options.some((o) => conforms(value, o));
    case "literal": return node.texts.some((t) => new TextDecoder().decode(t) === JSON.stringify(value));
    case "string": {
      if (typeof value !== "string") return false;
      const n = [...value].length;
      return n >= node.min && n <= node.max;
    }
    case "number": return typeof value === "number" && Number.isFinite(value) && (!node.integer || Number.isInteger(value));
    case "array": return Array.isArray(value) && value.length >= node.min && value.length <= node.max && value.every((v) => conforms(v, node.items));
    case "object": {
      if (!isObject(value)) return false;
      for (const p of node.props) if (p.required && !(p.name in value)) return false;
      return Object.entries(value).every(([k, v]) => {
        const p = node.props.find((q) => q.name === k);
        if (p) return conforms(v, p.node);
        return node.extra !== null && conforms(v, node.extra);
      });
    }
  }
}
