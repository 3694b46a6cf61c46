// The server process over real HTTP on loopback: start command, /health, /ready.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { repoRoot } from "../shared/paths.ts";

let proc: Subprocess<"ignore", "pipe", "pipe">;
let base = "";

beforeAll(async () => {
  proc = Bun.spawn([process.execPath, "shared/main.ts"], {
    cwd: repoRoot,
    env: { ...process.env, SEMANTIC_PORT: "0" },
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
  const m = text.match(/ready on (http:\/\/\S+)/);
  if (!m) throw new Error(`unexpected first line: ${text}`);
  base = m[1];
});

afterAll(() => proc?.kill());

test("prints one ready line with a loopback URL", () => {
  expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
});

test("GET /health reports MLX and the device", async () => {
  const r = await fetch(`${base}/health`);
  expect(r.status).toBe(200);
  const body = await r.json();
  expect(body.status).toBe("ok");
  expect(body.mlx).toBe("0.32.4");
  expect(body.device).toBe(process.platform === "darwin" ? "gpu" : "cpu");
});

test("GET /ready answers 200 once serving", async () => {
  const r = await fetch(`${base}/ready`);
  expect(r.status).toBe(200);
  expect((await r.json()).ready).toBe(true);
});

test("refuses a non-loopback bind without API keys", () => {
  const r = Bun.spawnSync([process.execPath, "shared/main.ts"], {
    cwd: repoRoot,
    env: { ...process.env, SEMANTIC_HOST: "0.0.0.0", SEMANTIC_API_KEYS: "", SEMANTIC_PORT: "0" },
  });
  expect(r.exitCode).toBe(2);
  expect(r.stderr.toString()).toContain("refusing to bind");
});
