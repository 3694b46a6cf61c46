// `bun run chat` (scripts/chat.ts) against the real server, driven as a person would: through tmux
// (send-keys / capture-pane). Two turns, the second one served from the agent's cache; /exit; then
// a second session resumes the same agent and its first turn is warm too. The second session runs
// in a pseudo-terminal made by `script` (util-linux), which is also the whole test's driver where
// tmux is missing; with neither, plain pipes. The driver used is printed, never skipped silently.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../../shared/paths.ts";
import { type ServerProcess, startServer } from "./server-process.ts";

/** A terminal running one command: type lines, press Ctrl-D, read what is on screen. */
type Terminal = { name: string; type(line: string): Promise<void>; ctrlD(): Promise<void>; screen(): Promise<string>; close(): Promise<void> };

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

function tmuxTerminal(cmd: string[], env: Record<string, string>): Terminal {
  // A private tmux server (-L), so a user's own sessions are never touched.
  const socket = `semantic-test-${process.pid}`;
  const tmux = (...args: string[]) => Bun.spawnSync(["tmux", "-L", socket, ...args], { stderr: "pipe" });
  const line = `env ${Object.entries(env).map(([k, v]) => `${k}=${quote(v)}`).join(" ")} ${cmd.map(quote).join(" ")}; echo "[exit $?]"; sleep 600`;
  const r = tmux("new-session", "-d", "-s", "chat", "-x", "200", "-y", "50", "-c", repoRoot, line);
  if (r.exitCode !== 0) throw new Error(`tmux new-session failed: ${r.stderr}`);
  return {
    name: "tmux",
    type: async (text) => void (tmux("send-keys", "-t", "chat", "-l", text), tmux("send-keys", "-t", "chat", "Enter")),
    ctrlD: async () => void tmux("send-keys", "-t", "chat", "C-d"),
    screen: async () => tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", "chat").stdout.toString(),
    close: async () => void tmux("kill-server"),
  };
}

/** `script` gives the command a pseudo-terminal (readline in terminal mode, as in tmux); without it, pipes. */
function spawnedTerminal(cmd: string[], env: Record<string, string>, pty: boolean): Terminal {
  const argv = pty ? ["script", "-qfec", cmd.map(quote).join(" "), "/dev/null"] : cmd;
  const proc = Bun.spawn(argv, { cwd: repoRoot, env: { ...process.env, ...env }, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  let out = "";
  for (const stream of [proc.stdout, proc.stderr]) {
    (async () => {
      for await (const chunk of stream) out += new TextDecoder().decode(chunk);
    })();
  }
  const write = async (s: string) => {
    proc.stdin.write(s);
    await proc.stdin.flush();
  };
  return {
    name: pty ? "script (pty)" : "pipes",
    type: (text) => write(`${text}${pty ? "\r" : "\n"}`),
    ctrlD: () => (pty ? write("\x04") : Promise.resolve(proc.stdin.end()).then(() => {})),
    screen: async () => out + (proc.exitCode !== null ? `\n[exit ${proc.exitCode}]\n` : ""),
    close: async () => {
      if (proc.exitCode === null) proc.kill();
      await proc.exited;
    },
  };
}

const hasTmux = Bun.which("tmux") !== null;
const hasScript = Bun.which("script") !== null;
const fallback = (cmd: string[], env: Record<string, string>) => spawnedTerminal(cmd, env, hasScript);
const primary = (cmd: string[], env: Record<string, string>) => (hasTmux ? tmuxTerminal(cmd, env) : fallback(cmd, env));

/** Waits until the screen matches `re` `times` times (an answer on a loaded 2-core CPU can take a while). */
async function waitFor(t: Terminal, re: RegExp, times = 1, ms = 240_000): Promise<RegExpMatchArray[]> {
  const g = new RegExp(re.source, `${re.flags.replace("g", "")}g`);
  const t0 = performance.now();
  for (;;) {
    const found = [...(await t.screen()).matchAll(g)];
    if (found.length >= times) return found;
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${re} x${times} in ${t.name}; screen:\n${await t.screen()}`);
    await Bun.sleep(200);
  }
}

const STATS = /\[(\d+) tokens, ([\d.]+) tok\/s, (\d+) of (\d+) prompt tokens cached, first token [\d.]+ s\]/;

let server: ServerProcess;
const chatHome = mkdtempSync(join(tmpdir(), "semantic-chat-"));
const terminals: Terminal[] = [];
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  for (const t of terminals) await t.close();
  await server?.stop();
  rmSync(chatHome, { recursive: true, force: true });
});

test("two turns (the second from the cache), /exit, then a new session resumes the agent warm", async () => {
  console.log(`driving the chat through ${hasTmux ? "tmux" : "(no tmux) "}${hasTmux ? "" : hasScript ? "script (pty)" : "pipes"}; the resumed session through ${hasScript ? "script (pty)" : "pipes"}`);
  const cmd = [process.execPath, "scripts/chat.ts", "--url", server.base, "--max-tokens", "8", "--system", "Answer in a few words."];
  const env = { SEMANTIC_HOME: chatHome };

  const first = primary(cmd, env);
  terminals.push(first);
  const [[, agent]] = await waitFor(first, /agent (chat-[0-9a-f]{8})\n/);
  await waitFor(first, /you> /);
  await first.type("What is the capital of France?");
  await waitFor(first, STATS, 1);
  await first.type("And of Italy?");
  const turns = await waitFor(first, STATS, 2);
  const [, tokens, rate, cached, prompt] = turns[1].map(Number);
  expect(tokens).toBeGreaterThan(0);
  expect(rate).toBeGreaterThan(0);
  // The second turn re-sends the first: all of it but the new question comes from the cache.
  expect(cached).toBeGreaterThan(0);
  expect(cached).toBeLessThan(prompt);
  expect(cached).toBeGreaterThanOrEqual(Number(turns[0][4]));
  await first.type("/exit");
  await waitFor(first, new RegExp(`bye: agent ${agent} is kept`));
  await waitFor(first, /\[exit 0\]/);

  const saved = JSON.parse(readFileSync(join(chatHome, "chat.json"), "utf8"));
  expect(saved.last).toBe(agent);
  expect(saved.agents[agent].messages.map((m: { role: string }) => m.role)).toEqual(["system", "user", "assistant", "user", "assistant"]);

  const second = fallback(cmd, env);
  terminals.push(second);
  await waitFor(second, new RegExp(`agent ${agent} \\(resumed, 2 turns\\)`));
  await waitFor(second, /you> /);
  await second.type("And of Spain?");
  const [[, , , warm]] = await waitFor(second, STATS);
  expect(Number(warm)).toBeGreaterThan(Number(prompt) - 1); // the whole earlier conversation was cached
  await second.ctrlD();
  await waitFor(second, new RegExp(`bye: agent ${agent} is kept`));

  const agents = (await (await fetch(`${server.base}/v1/agents`)).json()) as { data: { id: string }[] };
  expect(agents.data.map((a) => a.id)).toContain(agent);
});
