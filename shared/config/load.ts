// Settings from flags, then the environment, then the config file, then the schema's defaults.
// Every value given anywhere is validated (even one a higher source overrides), and every
// problem is reported at once, naming the key, the source and the expected value.
import { Value } from "@sinclair/typebox/value";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, type ConfigIssue } from "./error.ts";
import { type Env, type FileLocation, locateConfigFile, readConfigFile } from "./file.ts";
import { type Config, type ConfigKey, configSchema, expectedOf, type KeyInfo, keyInfos, parseSize } from "./schema.ts";

export type SourceKind = "flag" | "env" | "file" | "default";
export type Source = { kind: SourceKind; name: string };

export type Resolved = {
  config: Config;
  /** Where each value came from. */
  sources: Record<ConfigKey, Source>;
  /** The config file that was read, if any. */
  file: string | null;
  /** Where the config file is (or would be). */
  location: FileLocation;
};

// ---- values from text (flags, environment, `config set`) and from files ----

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off"]);

function parsePairs(text: string): Record<string, string> {
  // Same reading as ModelResolver: `pattern=target`, a bare pattern means target "*".
  const out: Record<string, string> = {};
  for (const entry of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = entry.lastIndexOf("=");
    out[eq >= 0 ? entry.slice(0, eq).trim() : entry] = eq >= 0 ? entry.slice(eq + 1).trim() : "*";
  }
  return out;
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A value written as text, as in the environment or a flag: "8GiB", "a,b", "claude-*=*", "true". */
export function valueFromText(info: KeyInfo, text: string): unknown {
  const t = text.trim();
  switch (info.kind) {
    case "integer":
      return /^[+-]?\d+$/.test(t) ? Number(t) : text;
    case "size":
      return parseSize(t) ?? text;
    case "boolean":
      return TRUE.has(t.toLowerCase()) ? true : FALSE.has(t.toLowerCase()) ? false : text;
    case "enum":
      if (/^[+-]?\d+$/.test(t)) return Number(t);
      return info.values!.includes(t.toLowerCase()) ? t.toLowerCase() : text;
    case "list":
      return t.startsWith("[") ? tryJson(t) : t.split(",").map((s) => s.trim()).filter(Boolean);
    case "map":
      return t.startsWith("{") ? tryJson(t) : parsePairs(t);
    default:
      return text;
  }
}

/** A value as a JSON or TOML file holds it: typed already, except sizes may be strings. */
export function valueFromFile(info: KeyInfo, value: unknown): unknown {
  if (typeof value !== "string") return value;
  if (info.kind === "size") return parseSize(value) ?? value;
  if (info.kind === "map") return parsePairs(value);
  if (info.kind === "list") return value.split(",").map((s) => s.trim()).filter(Boolean);
  return value;
}

function expandHome(p: string): string {
  return p === "~" ? homedir() : p.startsWith("~/") ? resolve(homedir(), p.slice(2)) : p;
}

/** Paths: "~/" expanded; a relative path made absolute against `base` (a hub id that is no file stays as is). */
function normalizePath(info: KeyInfo, value: string, base: string): string {
  const p = expandHome(value);
  if (isAbsolute(p)) return p;
  const abs = resolve(base, p);
  if (info.key === "model" && !p.startsWith("./") && !p.startsWith("../") && !existsSync(abs)) return p;
  return abs;
}

const shown = (info: KeyInfo, v: unknown) => {
  if (info.secret) return "(hidden)";
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

/** The value checked against the key's schema: the value, or an issue naming what was expected. */
function check(info: KeyInfo, value: unknown, source: string): { ok: true; value: unknown } | { ok: false; issue: ConfigIssue } {
  if (Value.Check(info.schema, value)) return { ok: true, value };
  return { ok: false, issue: { key: info.key, source, message: `expected ${expectedOf(info)}; got ${shown(info, value)}` } };
}

// ---- flags ----

type ParsedFlags = { values: Record<string, string | string[] | boolean | undefined>; config?: string };

function parseFlags(argv: readonly string[], infos: KeyInfo[]): ParsedFlags {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {
    config: { type: "string" },
    help: { type: "boolean", short: "h" },
  };
  for (const i of infos) {
    options[i.flag] = i.kind === "boolean" ? { type: "boolean" } : i.kind === "list" || i.kind === "map" ? { type: "string", multiple: true } : { type: "string" };
  }
  // "--port -5": parseArgs takes "-5" for a flag; joined as "--port=-5" it reaches the range check.
  const args = argv.map((a, i) => (/^-\d/.test(a) && /^--[a-z]/.test(argv[i - 1] ?? "") && !argv[i - 1].includes("=") ? null : a));
  const joined: string[] = [];
  args.forEach((a, i) => (a === null ? (joined[joined.length - 1] = `${argv[i - 1]}=${argv[i]}`) : joined.push(a)));
  try {
    const { values } = parseArgs({ args: joined, options, strict: true, allowPositionals: false, allowNegative: true } as Parameters<typeof parseArgs>[0]);
    return { values: values as ParsedFlags["values"], config: values.config as string | undefined };
  } catch (e) {
    throw new ConfigError([{ key: null, source: "command line", message: `${(e as Error).message.replace(/\s*\n\s*/g, " ")} (see --help)` }]);
  }
}

/** True when the command line asks for help (then nothing else is parsed). */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.some((a) => a === "--help" || a === "-h");
}

// ---- the resolution ----

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

/** The same rule as the server's Host check: loopback names and 127.0.0.0/8. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return LOOPBACK.has(h) || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function suggest(unknown: string, infos: KeyInfo[]): string {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  const hit = infos.find((i) => norm(i.key) === norm(unknown) || norm(i.flag) === norm(unknown) || norm(i.env.replace(/^SEMANTIC_/, "")) === norm(unknown));
  return hit ? ` (did you mean "${hit.key}"?)` : "";
}

function unknownKeys(data: Record<string, unknown>, source: string, infos: KeyInfo[]): ConfigIssue[] {
  const known = infos.map((i) => i.key as string);
  return Object.keys(data)
    .filter((k) => !known.includes(k))
    .map((k) => ({ key: k, source, message: `unknown key${suggest(k, infos)}; known keys: ${known.join(", ")}` }));
}

/** Problems with a config file's contents on their own: unknown keys and invalid values. */
export function checkFileData(data: Record<string, unknown>, source: string, env: Env = process.env): ConfigIssue[] {
  const infos = keyInfos(configSchema(env));
  const issues = unknownKeys(data, source, infos);
  for (const info of infos) {
    if (!Object.hasOwn(data, info.key)) continue;
    const r = check(info, valueFromFile(info, data[info.key]), source);
    if (!r.ok) issues.push(r.issue);
  }
  return issues;
}

/**
 * Every setting with its source. Throws ConfigError listing every problem: bad flags, bad
 * environment values, an unreadable or invalid file, unknown file keys, values out of range,
 * a non-loopback host without API keys.
 */
export function resolveConfig(argv: readonly string[] = process.argv.slice(2), env: Env = process.env): Resolved {
  const schema = configSchema(env);
  const infos = keyInfos(schema);
  const flags = parseFlags(argv, infos);
  const issues: ConfigIssue[] = [];

  const location = locateConfigFile(flags.config, env);
  let fileData: Record<string, unknown> = {};
  let file: string | null = null;
  if (location.explicit || existsSync(location.path)) {
    try {
      fileData = readConfigFile(location);
      file = location.path;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      issues.push(...e.issues);
    }
  }
  const fileSource = `file ${location.path}`;
  issues.push(...unknownKeys(fileData, fileSource, infos));

  const config: Record<string, unknown> = {};
  const sources = {} as Record<ConfigKey, Source>;
  for (const info of infos) {
    // Highest precedence first; every given value is checked, the first valid one wins.
    const given: { source: Source; label: string; value: unknown; base: string }[] = [];
    const f = flags.values[info.flag];
    if (f !== undefined) {
      const text = Array.isArray(f) ? f.join(",") : f;
      given.push({ source: { kind: "flag", name: `--${info.flag}` }, label: `flag --${info.flag}`, value: typeof text === "boolean" ? text : valueFromText(info, text), base: process.cwd() });
    }
    const e = env[info.env];
    if (e !== undefined && e !== "") {
      given.push({ source: { kind: "env", name: info.env }, label: `env ${info.env}`, value: valueFromText(info, e), base: process.cwd() });
    }
    if (file && Object.hasOwn(fileData, info.key)) {
      given.push({ source: { kind: "file", name: file }, label: fileSource, value: valueFromFile(info, fileData[info.key]), base: dirname(file) });
    }
    let chosen: { value: unknown; source: Source } | null = null;
    for (const g of given) {
      const r = check(info, g.value, g.label);
      if (!r.ok) {
        issues.push(r.issue);
        continue;
      }
      chosen ??= { value: info.path ? normalizePath(info, r.value as string, g.base) : r.value, source: g.source };
    }
    config[info.key] = chosen ? chosen.value : structuredClone(info.default);
    sources[info.key] = chosen ? chosen.source : { kind: "default", name: "default" };
  }

  if (issues.length === 0 && !isLoopbackHost(config.host as string) && (config.apiKeys as string[]).length === 0) {
    const s = sources.host;
    issues.push({
      key: "host",
      source: s.kind === "file" ? `file ${s.name}` : `${s.kind} ${s.name}`,
      message: `refusing to bind ${config.host} without API keys: set apiKeys (SEMANTIC_API_KEYS, --api-keys or the config file) or bind 127.0.0.1`,
    });
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return { config: config as Config, sources, file, location };
}

/** The validated settings. Throws ConfigError (see resolveConfig). */
export function loadConfig(argv: readonly string[] = process.argv.slice(2), env: Env = process.env): Config {
  return resolveConfig(argv, env).config;
}
