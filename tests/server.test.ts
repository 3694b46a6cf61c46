// The server process over real HTTP on loopback: it listens, loads the model, and prints one
// ready line; /ready is 200 from then on. (The weights load in one synchronous MLX call, so
// requests that arrive during the load are answered right after it; the 503 that /ready gives
// while no engine is set is checked in process, in tests/api/errors.test.ts.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../shared/paths.ts";

// A fresh data folder: the block pool and any config file start empty.
const home = mkdtempSync(join(tmpdir(), "semantic-test-"));
const env = { ...process.env, SEMANTIC_HOME: home };

let proc: Subprocess<"ignore", "pipe", "pipe">;
let base = "";

beforeAll(async () => {
  proc = Bun.spawn([process.execPath, "shared/main.ts"], {
    cwd: repoRoot,
    env: { ...env, SEMANTIC_PORT: "0" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const m = text.match(/^semantic ready on (http:\/\/\S+)\n$/);
  if (!m) throw new Error(`unexpected first line: ${text}`);
  base = m[1];
});

afterAll(async () => {
  proc?.kill();
  await proc?.exited;
  rmSync(home, { recursive: true, force: true });
});

test("prints exactly one ready line with a loopback URL", () => {
  expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
});

test("GET /health reports MLX and the device", async () => {
  const r = await fetch(`${base}/health`);
  expect(r.status).toBe(200);
  const body = (await r.json()) as { status: string; mlx: string; device: string };
  expect(body.status).toBe("ok");
  expect(body.mlx).toBe("0.32.4");
  expect(body.device).toBe(process.platform === "darwin" ? "gpu" : "cpu");
});

test("GET /ready answers 200 with the model once serving", async () => {
  const r = await fetch(`${base}/ready`);
  expect(r.status).toBe(200);
  expect(await r.json()).toEqual({ ready: true, model: "SmolLM2-135M-Instruct.Q4_1" });
});

test("refuses a non-loopback bind without API keys", () => {
  const r = Bun.spawnSync([process.execPath, "shared/main.ts"], {
    cwd: repoRoot,
    env: { ...env, SEMANTIC_HOST: "0.0.0.0", SEMANTIC_API_KEYS: "", SEMANTIC_PORT: "0" },
  });
  expect(r.exitCode).toBe(2);
  expect(r.stderr.toString()).toContain("refusing to bind");
});

test("a model that cannot be loaded ends the process with a clear message", () => {
  const r = Bun.spawnSync([process.execPath, "shared/main.ts"], {
    cwd: repoRoot,
    env: { ...env, SEMANTIC_MODEL: "/nonexistent/model.gguf", SEMANTIC_PORT: "0" },
  });
  expect(r.exitCode).toBe(1);
  expect(r.stderr.toString()).toContain("cannot load model /nonexistent/model.gguf");
  expect(r.stdout.toString()).not.toContain("ready on");
});

test("a bad alias list is refused before serving", () => {
  const r = Bun.spawnSync([process.execPath, "shared/main.ts"], {
    cwd: repoRoot,
    env: { ...env, SEMANTIC_MODEL_ALIASES: "gpt-4=some-other-model", SEMANTIC_PORT: "0" },
  });
  expect(r.exitCode).toBe(1);
  expect(r.stderr.toString()).toContain("some-other-model");
});
