// `--help`: every setting with its flag, environment variable, file key, expected value,
// default and description, generated from the schema.
import type { Env } from "./file.ts";
import { locateConfigFile } from "./file.ts";
import { configSchema, expectedOf, formatSize, type KeyInfo, keyInfos } from "./schema.ts";

const PLACEHOLDER: Record<KeyInfo["kind"], string> = {
  string: "<text>",
  integer: "<n>",
  size: "<size>",
  boolean: "",
  enum: "<choice>",
  list: "<a,b,...>",
  map: "<pattern=target,...>",
};

function shownDefault(info: KeyInfo): string {
  const d = info.default;
  if (info.kind === "size") return `${formatSize(d as number)} (${d})`;
  if (info.kind === "map") return Object.entries(d as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(",") || "(none)";
  if (Array.isArray(d)) return d.length ? d.join(",") : "(none)";
  return String(d);
}

function wrap(text: string, indent: string, width = 100): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines.join("\n");
}

/** The help text for the server's settings, with defaults as they are for `env`. */
export function configHelp(env: Env = process.env, usage = "bun run start [flags]"): string {
  const file = locateConfigFile(undefined, env).path;
  const out = [
    `Usage: ${usage}`,
    "",
    "Settings come from flags, then environment variables, then the config file, then defaults.",
    `Config file: --config <path> or SEMANTIC_CONFIG; otherwise ${file} if it exists.`,
    "It is JSON (.json) or TOML (.toml) with the keys below; sizes may be numbers of bytes or strings",
    'like "8GiB" (1024-based) or "512MB" (1000-based). `bun run config set <key> <value>` edits it.',
    "SEMANTIC_HOME sets the data folder (config, KV caches); SEMANTIC_CACHE_DIR the downloads and models;",
    "MLX_DIR a user's own MLX build. Invalid settings exit with code 2.",
    "",
    "Settings:",
  ];
  for (const info of keyInfos(configSchema(env))) {
    const flag = `--${info.flag}${PLACEHOLDER[info.kind] ? ` ${PLACEHOLDER[info.kind]}` : ` | --no-${info.flag}`}`;
    out.push("");
    out.push(`  ${flag.padEnd(36)} env ${info.env}   file key "${info.key}"`);
    out.push(wrap(info.description, "      "));
    out.push(wrap(`Expects ${expectedOf(info)}. Default: ${shownDefault(info)}.`, "      "));
  }
  out.push("");
  out.push("  --config <path>                      env SEMANTIC_CONFIG");
  out.push("      The config file to read (must exist when named).");
  out.push("  --help, -h");
  out.push("      Print this help and exit.");
  return out.join("\n");
}
