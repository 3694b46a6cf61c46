// Rewrites one marked section of BENCHMARKS.md, so each benchmark owns its part of the file.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../../shared/paths.ts";

export function writeSection(name: string, body: string): void {
  const path = join(repoRoot, "BENCHMARKS.md");
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const block = `${start}\n${body.trim()}\n${end}`;
  const text = existsSync(path) ? readFileSync(path, "utf8") : "# Benchmarks\n";
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  writeFileSync(path, re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`);
}

/** One line naming the machine and versions, for every section's header. */
export function machineLine(): string {
  const os = require("node:os") as typeof import("node:os");
  return `${os.cpus()[0]?.model ?? "unknown CPU"} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${process.platform}-${process.arch}, Bun ${Bun.version}`;
}
