// bun run chat [--url URL] [--api-key KEY] [--agent ID] [--new] [--system TEXT] [--max-tokens N]
// An interactive, streaming chat with a running server through the generated typed client
// (client/semantic-client.ts), over the agent API: the server keeps the agent's KV cache, so each
// turn prefills only what is new. After each turn it prints the speed and how many prompt tokens
// came from the cache. The agent id and the conversation are saved (SEMANTIC_HOME/chat.json), so
// the next session resumes the same agent, warm. /new starts a new conversation; /exit or Ctrl-D
// leaves; Ctrl-C stops an answer (and leaves at the prompt).
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { type PostV1AgentsAgentIdChatCompletionsBody, SemanticApiError, SemanticClient } from "../client/semantic-client.ts";
import { writeFileAtomic } from "../shared/config.ts";
import { dataDir } from "../shared/paths.ts";

type Message = PostV1AgentsAgentIdChatCompletionsBody["messages"][number];
/** The part of an OpenAI chat.completion.chunk this reads. */
type Chunk = {
  choices: { delta: { content?: string | null } }[];
  usage?: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens?: number } } | null;
};
/** What chat.json keeps: the last agent, and each agent's conversation (needed to resume: the cache is matched by prefix). */
type State = { last: string | null; agents: Record<string, { messages: Message[] }> };

const USAGE = "usage: bun run chat [--url URL] [--api-key KEY] [--agent ID] [--new] [--system TEXT] [--max-tokens N]";
const { values: flags } = parseArgs({
  options: {
    url: { type: "string", default: process.env.SEMANTIC_URL ?? `http://${process.env.SEMANTIC_HOST ?? "127.0.0.1"}:${process.env.SEMANTIC_PORT ?? "8080"}` },
    "api-key": { type: "string", default: process.env.SEMANTIC_API_KEY ?? process.env.SEMANTIC_API_KEYS?.split(",")[0] },
    agent: { type: "string", default: process.env.SEMANTIC_CHAT_AGENT },
    new: { type: "boolean", default: false },
    system: { type: "string", default: "You are a helpful assistant." },
    "max-tokens": { type: "string", default: "512" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (flags.help) {
  console.log(`${USAGE}\n\nEnvironment: SEMANTIC_URL, SEMANTIC_API_KEY, SEMANTIC_CHAT_AGENT; the conversation is kept in ${statePath()}.`);
  process.exit(0);
}

function statePath(): string {
  return join(dataDir(), "chat.json");
}

function loadState(): State {
  if (!existsSync(statePath())) return { last: null, agents: {} };
  try {
    return JSON.parse(readFileSync(statePath(), "utf8")) as State;
  } catch {
    console.error(`warning: ${statePath()} is not readable JSON; starting a new conversation`);
    return { last: null, agents: {} };
  }
}

const saveState = (s: State) => writeFileAtomic(statePath(), `${JSON.stringify(s, null, 2)}\n`);
const newAgentId = () => `chat-${randomBytes(4).toString("hex")}`;

const client = new SemanticClient(flags.url!, { apiKey: flags["api-key"] });
const state = loadState();
let agent = flags.agent ?? (flags.new ? null : state.last) ?? newAgentId();
const startConversation = () => (state.agents[agent] = { messages: [{ role: "system", content: flags.system! }] });
if (flags.new) startConversation();
const resumed = !!state.agents[agent];
if (!resumed) startConversation();

let model: string;
try {
  model = (await client.getV1Models()).data[0].id;
} catch (e) {
  console.error(`cannot reach the server at ${flags.url}: ${e instanceof SemanticApiError ? e.message : (e as Error).message}`);
  process.exit(1);
}
const turns = () => state.agents[agent].messages.filter((m) => m.role === "user").length;
console.log(`semantic chat: ${model} at ${flags.url}, agent ${agent}${resumed ? ` (resumed, ${turns()} turns)` : ""}`);
console.log("/new starts a new conversation, /exit or Ctrl-D leaves.");

/** One streamed turn: prints the answer as it comes, then its speed and cache use. Returns the answer, or null. */
async function turn(messages: Message[], signal: AbortSignal): Promise<string | null> {
  const t0 = performance.now();
  let first = 0;
  let text = "";
  let usage: Chunk["usage"] = null;
  const body = { model, messages, max_tokens: Number(flags["max-tokens"]), stream_options: { include_usage: true } };
  try {
    for await (const e of client.postV1AgentsAgentIdChatCompletionsStream(agent, body, undefined, signal)) {
      if (e.data === "[DONE]") break;
      const chunk = e.data as Chunk;
      const piece = chunk.choices[0]?.delta.content;
      if (piece) {
        first ||= performance.now();
        process.stdout.write(piece);
        text += piece;
      }
      usage = chunk.usage ?? usage;
    }
  } catch (e) {
    if (signal.aborted) {
      console.log("\n[stopped]");
      return null;
    }
    console.log(`\n[error: ${e instanceof SemanticApiError ? JSON.stringify(e.body) : (e as Error).message}]`);
    return null;
  }
  const end = performance.now();
  if (usage) {
    // Decode speed after the first token (the first one also waits for the prefill).
    const n = usage.completion_tokens;
    const rate = n > 1 && first ? (n - 1) / ((end - first) / 1000) : n / ((end - t0) / 1000);
    const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
    console.log(`\n[${n} tokens, ${rate.toFixed(1)} tok/s, ${cached} of ${usage.prompt_tokens} prompt tokens cached, first token ${((first - t0) / 1000).toFixed(2)} s]`);
  } else console.log();
  return text;
}

const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: "you> " });
let answering: AbortController | null = null;
rl.on("SIGINT", () => (answering ? answering.abort() : rl.close()));
rl.prompt();
for await (const line of rl) {
  const input = line.trim();
  if (input === "/exit") break;
  if (input === "/new") {
    agent = newAgentId();
    startConversation();
    console.log(`new conversation: agent ${agent}`);
  } else if (input) {
    const messages = [...state.agents[agent].messages, { role: "user" as const, content: input }];
    answering = new AbortController();
    process.stdout.write("assistant> ");
    const answer = await turn(messages, answering.signal);
    answering = null;
    if (answer !== null) {
      state.agents[agent].messages = [...messages, { role: "assistant", content: answer }];
      state.last = agent;
      saveState(state);
    }
  }
  rl.prompt();
}
rl.close();
state.last = agent;
saveState(state);
console.log(`\nbye: agent ${agent} is kept; \`bun run chat\` resumes it.`);
process.exit(0);
