// Renders a model's own Jinja chat template the way transformers' apply_chat_template does
// (same variables, tools, tojson keyword arguments), with @huggingface/jinja.
import { Template } from "@huggingface/jinja";

export interface ContentPart {
  type: string;
  text?: string;
  [key: string]: unknown;
}

export interface ToolCall {
  id?: string;
  type?: "function";
  /** `arguments` may be the JSON string of the OpenAI API; templates receive it parsed. */
  function: { name: string; arguments: string | Record<string, unknown> };
}

export interface ChatMessage {
  role: string;
  content?: string | ContentPart[] | null;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  name?: string;
}

/** A tool as a JSON schema, e.g. { type: "function", function: { name, description, parameters } }. */
export type ToolSchema = Record<string, unknown>;

export interface ChatTemplateInput {
  messages: ChatMessage[];
  tools?: ToolSchema[];
  addGenerationPrompt?: boolean;
  /** Extra template variables some models read (e.g. enable_thinking, date_string). */
  extra?: Record<string, unknown>;
}

export class ChatTemplateError extends Error {
  override readonly name = "ChatTemplateError";
}

// Used only for a model that ships no template: plain ChatML, the format most small
// instruct models (SmolLM, Qwen) were tuned on.
const CHATML_FALLBACK =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Templates that loop over a message's content (or test `is string`) take OpenAI-style parts;
// the others get the text parts joined, as vLLM does.
const READS_CONTENT_PARTS = /for\s+\w+\s+in\s+[\w.]*(\[\s*['"]content['"]\s*\]|\.content)|content['"]?\s*\]?\s+is\s+(not\s+)?string/;

function parsedArguments(args: string | Record<string, unknown>): unknown {
  if (typeof args !== "string") return args;
  try {
    return JSON.parse(args);
  } catch {
    return args; // not JSON: the template gets the raw text
  }
}

export class ChatTemplate {
  readonly source: string;
  readonly isFallback: boolean;
  /** Whether the template reads `tools`, i.e. the model was given a tool-calling format. */
  readonly supportsTools: boolean;
  readonly #template: Template;
  readonly #contentAsParts: boolean;

  constructor(
    source: string | undefined,
    readonly specialTokens: { bosToken?: string; eosToken?: string } = {},
  ) {
    this.isFallback = source === undefined || source.trim() === "";
    this.source = this.isFallback ? CHATML_FALLBACK : source!;
    this.supportsTools = /\btools\b/.test(this.source);
    this.#contentAsParts = READS_CONTENT_PARTS.test(this.source);
    try {
      this.#template = new Template(this.source);
    } catch (e) {
      throw new ChatTemplateError(`chat template does not parse: ${(e as Error).message}`);
    }
  }

  /**
   * The prompt text for a conversation.
   * @example new ChatTemplate(tok.chatTemplate).render({ messages: [{ role: "user", content: "Hi" }], addGenerationPrompt: true })
   */
  render(input: ChatTemplateInput): string {
    const variables: Record<string, unknown> = {
      ...input.extra,
      messages: input.messages.map((m) => this.#templateMessage(m)),
      tools: input.tools && input.tools.length > 0 ? input.tools : null,
      add_generation_prompt: input.addGenerationPrompt ?? false,
      bos_token: this.specialTokens.bosToken ?? "",
      eos_token: this.specialTokens.eosToken ?? "",
    };
    // raise_exception, strftime_now and tojson(indent, ensure_ascii, separators, sort_keys)
    // are @huggingface/jinja globals; a template's raise_exception(msg) surfaces here as msg.
    try {
      return this.#template.render(variables);
    } catch (e) {
      throw new ChatTemplateError(`chat template failed: ${(e as Error).message}`);
    }
  }

  #templateMessage(message: ChatMessage): Record<string, unknown> {
    const out: Record<string, unknown> = { role: message.role };
    const content = message.content;
    if (Array.isArray(content) && !this.#contentAsParts) {
      out.content = content.flatMap((p) => (p.type === "text" && p.text !== undefined ? [p.text] : [])).join("\n");
    } else {
      out.content = content ?? null;
    }
    if (message.tool_calls) {
      out.tool_calls = message.tool_calls.map((call) => ({
        ...call,
        function: { ...call.function, arguments: parsedArguments(call.function.arguments) },
      }));
    }
    if (message.tool_call_id !== undefined) out.tool_call_id = message.tool_call_id;
    if (message.name !== undefined) out.name = message.name;
    return out;
  }
}
