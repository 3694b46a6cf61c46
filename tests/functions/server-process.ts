// Starts the real server process (shared/main.ts: real model, real engine) on a free loopback
// port and waits for its one ready line. One per test file: loading the model takes seconds.
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../../shared/paths.ts";

export type ServerProcess = { base: string; proc: Subprocess<"ignore", "pipe", "pipe">; stderr: () => string; stop: () => Promise<void> };

/**
 * The server with a fresh data folder (its block pool and config file start empty) and 16-token
 * cache blocks, so cache tests need only short prompts (prefill is slow on a shared 2-core CPU).
 */
export async function startServer(env: Record<string, string> = {}): Promise<ServerProcess> {
  const home = mkdtempSync(join(tmpdir(), "semantic-test-"));
  const proc = Bun.spawn([process.execPath, "shared/main.ts"], {
    cwd: repoRoot,
    env: { ...process.env, SEMANTIC_PORT: "0", SEMANTIC_HOME: home, SEMANTIC_BLOCK_TOKENS: "16", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  let errText = "";
  (async () => {
    for await (const chunk of proc.stderr) errText += new TextDecoder().decode(chunk);
  })();
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before ready: ${errText}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const m = text.match(/^semantic ready on (http:\/\/\S+)\n/);
  if (!m) throw new Error(`unexpected first line: ${text}`);
  return {
    base: m[1],
    proc,
    stderr: () => errText,
    // After the process has exited: it flushes cache writes on SIGTERM.
    stop: async () => {
      proc.kill();
      await proc.exited;
      rmSync(home, { recursive: true, force: true });
    },
  };
}
