// `bun run config <command>`: read and edit the server's config file.
//   path                 the config file in use (or the one `set` would create)
//   get <key>            the effective value of a setting (flags, env, file, default)
//   set <key> <value>    validate the value and write it to the (JSON) config file, atomically, mode 0600
//   unset <key>          remove a setting from the config file
//   show                 every effective setting and where it came from (API keys hidden)
//   check                validate the whole configuration; exit 2 with the problems if invalid
//   help                 the settings' help (the same as `bun run start --help`)
// `--config <path>` (or SEMANTIC_CONFIG) selects the file; get/show/check take every server flag.
import { Value } from "@sinclair/typebox/value";
import { existsSync, readFileSync } from "node:fs";
import {
  ConfigError,
  checkFileData,
  configHelp,
  configSchema,
  formatOf,
  keyInfos,
  locateConfigFile,
  readConfigFile,
  resolveConfig,
  valueFromText,
  writeFileAtomic,
} from "../shared/config.ts";
import type { Env } from "../shared/config/file.ts";
import { expectedOf, type KeyInfo, parseSize } from "../shared/config/schema.ts";

export type Io = { out: (s: string) => void; err: (s: string) => void };

const USAGE = `Usage: bun run config <command> [--config <path>]
  path                 the config file in use (or the one \`set\` would create)
  get <key>            the effective value of a setting
  set <key> <value>    validate and write a setting to the config file (JSON, atomic, mode 0600)
  unset <key>          remove a setting from the config file
  show                 every effective setting and its source (API keys hidden)
  check                validate the configuration (exit 2 if invalid)
  help                 every setting: flag, environment variable, default, description`;

/** `--config <path>` / `--config=<path>` out of `args`; the rest is returned. */
function takeConfigFlag(args: string[]): { config?: string; rest: string[] } {
  const rest: string[] = [];
  let config: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--config") config = args[++i];
    else if (a.startsWith("--config=")) config = a.slice("--config=".length);
    else rest.push(a);
  }
  return { config, rest };
}

function findKey(key: string | undefined, env: Env): KeyInfo {
  const infos = keyInfos(configSchema(env));
  const info = infos.find((i) => i.key === key);
  if (!info) {
    throw new ConfigError([{ key: key ?? "(none)", source: "command line", message: `unknown setting; known keys: ${infos.map((i) => i.key).join(", ")}` }]);
  }
  return info;
}

const render = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/** Runs one command; returns the exit code (0 ok, 2 invalid configuration or usage). */
export function runConfigCommand(argv: string[], env: Env = process.env, io: Io = { out: console.log, err: console.error }): number {
  const [command, ...args] = argv;
  try {
    switch (command) {
      case "path": {
        const { config } = takeConfigFlag(args);
        const loc = locateConfigFile(config, env);
        io.out(loc.path);
        io.err(`(${loc.origin}; ${existsSync(loc.path) ? "exists" : "does not exist yet"})`);
        return 0;
      }
      case "get": {
        const [key, ...flags] = args;
        const info = findKey(key, env);
        io.out(render(resolveConfig(flags, env).config[info.key]));
        return 0;
      }
      case "show": {
        const r = resolveConfig(args, env);
        io.out(`# config file: ${r.file ?? `none (${r.location.path} does not exist)`}`);
        for (const info of keyInfos(configSchema(env))) {
          const v = r.config[info.key];
          const shown = info.secret ? `(${(v as string[]).length} hidden)` : render(v);
          const s = r.sources[info.key];
          io.out(`${info.key} = ${shown}    # ${s.kind === "default" ? "default" : `${s.kind} ${s.name}`}`);
        }
        return 0;
      }
      case "check": {
        const r = resolveConfig(args, env);
        io.out(`configuration ok${r.file ? ` (file ${r.file})` : " (no config file)"}`);
        return 0;
      }
      case "set":
      case "unset": {
        const { config, rest } = takeConfigFlag(args);
        const [key, text, ...extra] = rest;
        if (command === "set" ? text === undefined || extra.length > 0 : text !== undefined) {
          io.err(command === "set" ? "usage: bun run config set <key> <value>" : "usage: bun run config unset <key>");
          return 2;
        }
        const info = findKey(key, env);
        const loc = locateConfigFile(config, env);
        const exists = existsSync(loc.path);
        if (formatOf(loc.path, exists ? readFileSync(loc.path, "utf8") : "{") === "toml") {
          io.err(`${loc.path} is TOML: \`config ${command}\` writes JSON only; edit the TOML file by hand`);
          return 2;
        }
        const data = exists ? readConfigFile(loc) : {};
        if (command === "set") {
          const value = valueFromText(info, text);
          if (!Value.Check(info.schema, value)) {
            const got = info.secret ? "(hidden)" : JSON.stringify(text);
            throw new ConfigError([{ key: info.key, source: "command line", message: `expected ${expectedOf(info)}; got ${got}` }]);
          }
          // A size keeps the unit it was written with ("8GiB" stays readable in the file).
          data[info.key] = info.kind === "size" && /[a-z]/i.test(text) && parseSize(text) !== null ? text.trim() : value;
        } else {
          delete data[info.key];
        }
        const issues = checkFileData(data, `file ${loc.path}`, env);
        if (issues.length > 0) throw new ConfigError(issues);
        writeFileAtomic(loc.path, `${JSON.stringify(data, null, 2)}\n`, 0o600);
        io.out(command === "set" ? `${info.key} = ${info.secret ? "(hidden)" : render(data[info.key])} in ${loc.path}` : `${info.key} removed from ${loc.path}`);
        // The file is valid on its own; say so if the whole configuration (with env, other keys) is not yet.
        try {
          resolveConfig(config ? ["--config", config] : [], env);
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          io.err(`note: saved, but the configuration as a whole is not valid yet:\n${e.message}`);
        }
        return 0;
      }
      case "help":
      case "--help":
      case "-h":
        io.out(`${USAGE}\n\n${configHelp(env)}`);
        return 0;
      default:
        io.err(command ? `unknown command: ${command}\n\n${USAGE}` : USAGE);
        return 2;
    }
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.err(e.message);
    return 2;
  }
}

if (import.meta.main) process.exit(runConfigCommand(process.argv.slice(2)));
