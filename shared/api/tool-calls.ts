// Tool calls out of model text, as it streams. The format is the one shared/api/prompt.ts
// asks for (and Hermes/Qwen-style templates use): <tool_call>{"name": …, "arguments": {…}}</tool_call>,
// the JSON an object or a list of them. Text that might open a call is held back until it is
// clear; a call that does not parse, or names an undeclared tool, comes back as plain text.
// Scanning is linear in the output: every search resumes where the last one stopped.

export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";

/** A parsed call; `arguments` is the JSON text of an object. */
export type ParsedToolCall = { name: string; arguments: string };

export type ToolParseEvent = { type: "text"; text: string } | { type: "call"; call: ParsedToolCall };

export type ToolCallParserOptions = {
  /** Declared tool names; a call naming another tool stays text. null accepts any name. */
  tools: ReadonlySet<string> | null;
};

/** Length of the longest suffix of `s` that is a proper prefix of `marker`. */
function partialMarker(s: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, s.length); n > 0; n--) {
    if (s.endsWith(marker.slice(0, n))) return n;
  }
  return 0;
}

/**
 * Turns the JSON between the markers into calls, or null when it is not a well-formed call.
 * @example parseCallBody('{"name":"f","arguments":{"x":1}}', null) // [{ name: "f", arguments: '{"x":1}' }]
 */
export function parseCallBody(body: string, tools: ReadonlySet<string> | null): ParsedToolCall[] | null {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return null;
  }
  const items = Array.isArray(value) ? value : [value];
  if (items.length === 0) return null;
  const calls: ParsedToolCall[] = [];
  for (const item of items) {
    if (item === null || typeof item !== "object" || Array.isArray(item)) return null;
    const { name } = item as { name?: unknown };
    let args = (item as { arguments?: unknown; parameters?: unknown }).arguments ?? (item as { parameters?: unknown }).parameters ?? {};
    if (typeof name !== "string" || !name || (tools && !tools.has(name))) return null;
    if (typeof args === "string") {
      try {
        args = JSON.parse(args);
      } catch {
        return null;
      }
    }
    if (args === null || typeof args !== "object" || Array.isArray(args)) return null;
    calls.push({ name, arguments: JSON.stringify(args) });
  }
  return calls;
}

export class ToolCallParser {
  #mode: "text" | "call" = "text";
  // Text mode: the held suffix that may open a call. Call mode: the call's text so far, in
  // pieces (joined once, when the call closes), and its last few characters for the search.
  #held = "";
  #parts: string[] = [];
  #length = 0;
  #tail = "";

  constructor(readonly options: ToolCallParserOptions) {}

  /** Feeds model text; returns the text and calls that are now certain. */
  push(text: string): ToolParseEvent[] {
    const out: ToolParseEvent[] = [];
    let rest = text;
    while (rest) {
      if (this.#mode === "text") {
        const buf = this.#held + rest;
        rest = "";
        const at = buf.indexOf(TOOL_CALL_OPEN);
        if (at < 0) {
          const keep = partialMarker(buf, TOOL_CALL_OPEN);
          if (buf.length > keep) out.push({ type: "text", text: buf.slice(0, buf.length - keep) });
          this.#held = buf.slice(buf.length - keep);
        } else {
          if (at > 0) out.push({ type: "text", text: buf.slice(0, at) });
          this.#held = "";
          this.#mode = "call";
          this.#parts = [];
          this.#length = 0;
          this.#tail = "";
          rest = buf.slice(at + TOOL_CALL_OPEN.length);
        }
      } else {
        // Only the new text and the few characters before it can complete the closing marker.
        const window = this.#tail + rest;
        const at = window.indexOf(TOOL_CALL_CLOSE);
        if (at < 0) {
          this.#parts.push(rest);
          this.#length += rest.length;
          this.#tail = window.slice(-(TOOL_CALL_CLOSE.length - 1));
          rest = "";
        } else {
          const all = this.#parts.join("") + rest;
          const close = this.#length - this.#tail.length + at;
          const body = all.slice(0, close);
          rest = all.slice(close + TOOL_CALL_CLOSE.length);
          this.#mode = "text";
          this.#parts = [];
          out.push(...this.#resolve(body, TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE));
        }
      }
    }
    return out;
  }

  /** Ends the stream: held text is released; an unclosed call is kept if its JSON is complete. */
  finish(): ToolParseEvent[] {
    if (this.#mode === "call") {
      const body = this.#parts.join("");
      this.#mode = "text";
      this.#parts = [];
      return this.#resolve(body, TOOL_CALL_OPEN + body);
    }
    const rest = this.#held;
    this.#held = "";
    return rest ? [{ type: "text", text: rest }] : [];
  }

  #resolve(body: string, raw: string): ToolParseEvent[] {
    const calls = parseCallBody(body.trim(), this.options.tools);
    if (!calls) return [{ type: "text", text: raw }];
    return calls.map((call) => ({ type: "call", call }));
  }
}
