// The config file: where it is, how it is read (JSON or TOML), and how it is written (JSON,
// atomically, mode 0600 because it may hold API keys).
import { randomBytes } from "node:crypto";
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { dataDir } from "../paths.ts";
import { ConfigError } from "./error.ts";

export type Env = Record<string, string | undefined>;

export type FileLocation = {
  path: string;
  /** Named by --config or SEMANTIC_CONFIG: it must exist. The default one is read only if it exists. */
  explicit: boolean;
  /** "flag --config", "env SEMANTIC_CONFIG" or "default". */
  origin: string;
};

/** The config file: `--config <path>`, else SEMANTIC_CONFIG, else <data folder>/config.json. */
export function locateConfigFile(flagPath: string | undefined, env: Env): FileLocation {
  if (flagPath) return { path: resolve(flagPath), explicit: true, origin: "flag --config" };
  if (env.SEMANTIC_CONFIG) return { path: resolve(env.SEMANTIC_CONFIG), explicit: true, origin: "env SEMANTIC_CONFIG" };
  return { path: join(dataDir(env), "config.json"), explicit: false, origin: "default" };
}

export function formatOf(path: string, text: string): "json" | "toml" {
  const ext = extname(path).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".toml") return "toml";
  return text.trimStart().startsWith("{") ? "json" : "toml";
}

/** The file's top-level table. Unreadable, unparsable or not a table: ConfigError naming the file. */
export function readConfigFile(loc: FileLocation): Record<string, unknown> {
  const source = `file ${loc.path}${loc.explicit ? ` (from ${loc.origin})` : ""}`;
  const fail = (message: string): never => {
    throw new ConfigError([{ key: null, source, message }]);
  };
  let text = "";
  try {
    text = readFileSync(loc.path, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    fail(`cannot read the config file: ${err.code === "ENOENT" ? "no such file" : err.code === "EACCES" ? "permission denied" : err.message}`);
  }
  const format = formatOf(loc.path, text);
  let data: unknown;
  try {
    data = format === "json" ? JSON.parse(text) : Bun.TOML.parse(text);
  } catch (e) {
    fail(`not valid ${format.toUpperCase()}: ${(e as Error).message}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    fail(`expected a ${format === "json" ? "JSON object" : "TOML table"} of settings at the top level`);
  }
  return data as Record<string, unknown>;
}

/**
 * Replaces `path` with `data` all at once: a temporary file in the same folder, written and
 * fsynced, renamed over the target, then the folder fsynced. Readers see the old file or the
 * new one, never a part. Creates the folder (mode 0700) when missing.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    try {
      fchmodSync(fd, mode); // the umask may have taken bits from `mode`
      writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed or never created
    }
    throw e;
  }
  try {
    const dfd = openSync(dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // some file systems refuse fsync on a folder; the rename itself is still atomic
  }
}
