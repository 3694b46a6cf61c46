// The set-up is idempotent and cached: with pip forbidden, a fresh copy of the project still
// unpacks MLX from the cached wheel and builds the C ABI, and a second run changes nothing.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ffiLibraryPath, repoRoot } from "../shared/paths.ts";

const dir = mkdtempSync(join(tmpdir(), "semantic-setup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("set-up restores .deps from the local cache without pip, then does nothing", () => {
  const project = join(dir, "p");
  for (const part of ["package.json", "bun.lock", "ffi", "shared", "scripts"]) cpSync(join(repoRoot, part), join(project, part), { recursive: true });
  symlinkSync(join(repoRoot, "node_modules"), join(project, "node_modules"));
  // A python3 that refuses pip (any download) but still unpacks zips.
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const real = Bun.which("python3");
  const shim = join(bin, "python3");
  writeFileSync(shim, `#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "pip forbidden in this test" >&2; exit 97; fi\nexec ${real} "$@"\n`);
  chmodSync(shim, 0o755);
  const { MLX_DIR: _ownMlx, ...inherited } = process.env;
  const env = { ...inherited, PATH: `${bin}:${process.env.PATH}` };

  const first = Bun.spawnSync([process.execPath, "scripts/setup.ts"], { cwd: project, env });
  expect(first.stderr.toString()).not.toContain("pip forbidden");
  expect(first.exitCode).toBe(0);
  const lib = ffiLibraryPath.replace(repoRoot, project);
  expect(existsSync(lib)).toBe(true);
  const built = statSync(lib).mtimeMs;

  const second = Bun.spawnSync([process.execPath, "scripts/setup.ts"], { cwd: project, env });
  expect(second.exitCode).toBe(0);
  expect(second.stderr.toString()).toBe("");
  expect(statSync(lib).mtimeMs).toBe(built);
}, 300_000);
