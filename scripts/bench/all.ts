// bun run bench — every benchmark in sequence: each `bench:<name>` script of package.json, in the
// order they are declared (a new benchmark joins by adding its script). Each one rewrites its own
// section of BENCHMARKS.md. One failing benchmark does not stop the others; the exit code says.
import { join } from "node:path";
import { repoRoot } from "../../shared/paths.ts";

const pkg = (await Bun.file(join(repoRoot, "package.json")).json()) as { scripts: Record<string, string> };
const names = Object.keys(pkg.scripts).filter((n) => n.startsWith("bench:"));
const failed: string[] = [];
for (const name of names) {
  process.stderr.write(`\nbench: ${name}\n`);
  const t0 = performance.now();
  const r = Bun.spawnSync([process.execPath, "run", name], { cwd: repoRoot, stdout: "inherit", stderr: "inherit" });
  process.stderr.write(`bench: ${name} ${r.exitCode === 0 ? "done" : `failed (${r.exitCode})`} in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  if (r.exitCode !== 0) failed.push(name);
}
if (failed.length) {
  process.stderr.write(`bench: failed: ${failed.join(", ")}\n`);
  process.exit(1);
}
