// The whole project type-checks (sources, scripts, tests): `tsc --noEmit` with the project's
// tsconfig, so a type error fails the suite like a failing test.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { repoRoot } from "../shared/paths.ts";

test("tsc --noEmit reports no errors", () => {
  const r = Bun.spawnSync([join(repoRoot, "node_modules", ".bin", "tsc"), "--noEmit", "-p", repoRoot], { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
  const output = `${r.stdout.toString()}${r.stderr.toString()}`.trim();
  expect(output).toBe("");
  expect(r.exitCode).toBe(0);
});
