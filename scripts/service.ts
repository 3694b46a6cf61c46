// `bun run service:install | service:uninstall | service:status`: run the server as a per-user
// service that starts at login and restarts when it exits.
//   macOS: a launchd agent, ~/Library/LaunchAgents/<label>.plist, loaded with `launchctl bootstrap gui/<uid>`.
//   Linux: a systemd user unit, ~/.config/systemd/user/semantic.service. Printed by default;
//          written with --write, and enabled (`systemctl --user enable --now`) with --write --enable.
// Server flags after the command (e.g. `--port 9000`, `--config <path>`) are validated and kept
// in the service's environment, with the SEMANTIC_* variables of the calling shell.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { ConfigError, type Config, configSchema, keyInfos, type KeyInfo, type Resolved, resolveConfig, writeFileAtomic } from "../shared/config.ts";
import type { Env } from "../shared/config/file.ts";
import { ffiLibraryPath, repoRoot } from "../shared/paths.ts";

export const DEFAULT_LABEL = "dev.semantic.server";
export const SYSTEMD_UNIT = "semantic";

/** What a service definition needs; both generators take the same options. */
export type ServiceOptions = {
  /** launchd Label (reverse-DNS); named in the systemd unit's description. */
  label: string;
  /** Absolute path of the Bun binary. */
  bunPath: string;
  /** Absolute path of the server's entry script (shared/main.ts). */
  entry: string;
  /** Extra arguments after the entry script. */
  args?: string[];
  workingDirectory: string;
  env: Record<string, string>;
  /** launchd only: StandardOutPath and StandardErrorPath go here. */
  logDir: string;
  /** Seconds between restarts (ThrottleInterval / RestartSec). */
  restartSeconds: number;
  /** Seconds the service may take to stop after SIGTERM before it is killed (ExitTimeOut / TimeoutStopSec). */
  stopTimeoutSeconds: number;
};

function checkOptions(o: ServiceOptions): void {
  for (const [name, p] of [["bunPath", o.bunPath], ["entry", o.entry], ["workingDirectory", o.workingDirectory], ["logDir", o.logDir]] as const) {
    if (!isAbsolute(p)) throw new Error(`${name} must be an absolute path, got ${JSON.stringify(p)}`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(o.label)) throw new Error(`label must be letters, digits, dots and dashes, got ${JSON.stringify(o.label)}`);
  for (const name of Object.keys(o.env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`not an environment variable name: ${JSON.stringify(name)}`);
  }
  for (const v of [o.bunPath, o.entry, o.workingDirectory, o.logDir, ...(o.args ?? []), ...Object.values(o.env)]) {
    // Neither a property list (XML 1.0) nor a unit file line can carry these.
    if (/[\x00-\x08\x0A-\x1F\x7F\uFFFE\uFFFF]/.test(v)) throw new Error(`control characters cannot go in a service definition: ${JSON.stringify(v)}`);
  }
  if (!Number.isInteger(o.restartSeconds) || o.restartSeconds < 1) throw new Error("restartSeconds must be a positive integer");
  if (!Number.isInteger(o.stopTimeoutSeconds) || o.stopTimeoutSeconds < 1) throw new Error("stopTimeoutSeconds must be a positive integer");
}

// ---- launchd ----

const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");

type PlistValue = string | number | boolean | PlistValue[] | { [key: string]: PlistValue };

function plistValue(v: PlistValue, indent: string): string {
  if (typeof v === "string") return `${indent}<string>${xml(v)}</string>`;
  if (typeof v === "number") return `${indent}<integer>${v}</integer>`;
  if (typeof v === "boolean") return `${indent}<${v}/>`;
  const inner = `${indent}\t`;
  if (Array.isArray(v)) return [`${indent}<array>`, ...v.map((x) => plistValue(x, inner)), `${indent}</array>`].join("\n");
  return [`${indent}<dict>`, ...Object.entries(v).flatMap(([k, x]) => [`${inner}<key>${xml(k)}</key>`, plistValue(x, inner)]), `${indent}</dict>`].join("\n");
}

/** The launchd agent's property list (XML). Pure: no file or process is touched. */
export function launchdPlist(o: ServiceOptions): string {
  checkOptions(o);
  const body: Record<string, PlistValue> = {
    Label: o.label,
    ProgramArguments: [o.bunPath, o.entry, ...(o.args ?? [])],
    WorkingDirectory: o.workingDirectory,
    EnvironmentVariables: o.env,
    RunAtLoad: true,
    KeepAlive: true,
    ThrottleInterval: o.restartSeconds,
    // The graceful shutdown (drain, flush the cache) needs more than launchd's default 20 s.
    ExitTimeOut: o.stopTimeoutSeconds,
    // Scheduled like an app, not throttled like a background job: it serves interactive clients.
    ProcessType: "Interactive",
    StandardOutPath: join(o.logDir, "semantic.out.log"),
    StandardErrorPath: join(o.logDir, "semantic.err.log"),
  };
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    plistValue(body, ""),
    "</plist>",
    "",
  ].join("\n");
}

// ---- systemd ----

/**
 * One word of a unit file's ExecStart= or Environment=: bare when plain, else double-quoted with
 * \ and " escaped; % doubled (specifiers) and, in ExecStart, $ doubled (variable expansion).
 */
function unitWord(s: string, inExec: boolean): string {
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(s)) return s;
  let q = s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/%/g, "%%");
  if (inExec) q = q.replace(/\$/g, "$$$$");
  return `"${q}"`;
}

/** The systemd user unit (INI). Pure: no file or process is touched. */
export function systemdUnit(o: ServiceOptions): string {
  checkOptions(o);
  const exec = [o.bunPath, o.entry, ...(o.args ?? [])].map((w) => unitWord(w, true)).join(" ");
  return [
    "# Semantic, the local LLM inference server, as a systemd user unit.",
    "# This is systemd on Linux: launchd (the macOS service manager) does not exist here.",
    `# Install: save as ~/.config/systemd/user/${SYSTEMD_UNIT}.service, then`,
    `#   systemctl --user daemon-reload && systemctl --user enable --now ${SYSTEMD_UNIT}`,
    `# Logs: journalctl --user -u ${SYSTEMD_UNIT} -f`,
    "[Unit]",
    `Description=Semantic local LLM inference server (${o.label})`,
    "",
    "[Service]",
    "Type=simple",
    `WorkingDirectory=${o.workingDirectory.replace(/%/g, "%%")}`,
    `ExecStart=${exec}`,
    ...Object.entries(o.env).map(([k, v]) => `Environment=${unitWord(`${k}=${v}`, false)}`),
    "Restart=always",
    `RestartSec=${o.restartSeconds}`,
    "KillSignal=SIGTERM",
    `TimeoutStopSec=${o.stopTimeoutSeconds}`,
    "UMask=0077",
    "StandardOutput=journal",
    "StandardError=journal",
    "",
    "[Install]",
    "WantedBy=default.target",
    "",
  ].join("\n");
}

// ---- from the calling shell to service options ----

/** A setting as the environment spells it (the reverse of the config's text parsing). */
function envText(info: KeyInfo, v: unknown): string {
  if (info.kind === "list") return (v as string[]).join(",");
  if (info.kind === "map") return Object.entries(v as Record<string, string>).map(([k, t]) => `${k}=${t}`).join(",");
  return String(v);
}

const PATH_VARS = ["SEMANTIC_HOME", "SEMANTIC_CACHE_DIR", "SEMANTIC_CONFIG", "MLX_DIR"];

/**
 * The service's environment: PATH (with Bun's folder), every SEMANTIC_* variable and MLX_DIR of
 * the calling shell (folders made absolute), settings given as flags (as their SEMANTIC_*
 * variables, so no secret shows in a process list), and SEMANTIC_CONFIG for a file named by flag.
 */
export function serviceEnv(env: Env, resolved: Resolved, bunPath: string): Record<string, string> {
  const out: Record<string, string> = {};
  const path = env.PATH || "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  const bunDir = dirname(bunPath);
  out.PATH = path.split(delimiter).includes(bunDir) ? path : `${bunDir}${delimiter}${path}`;
  for (const [k, v] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (v === undefined || v === "" || !(k.startsWith("SEMANTIC_") || k === "MLX_DIR")) continue;
    out[k] = PATH_VARS.includes(k) ? resolve(v) : v;
  }
  for (const info of keyInfos(configSchema(env))) {
    const s = resolved.sources[info.key];
    // Flags become variables; variables that name paths carry the resolved (absolute) path.
    if (s.kind === "flag" || (s.kind === "env" && info.path)) out[info.env] = envText(info, resolved.config[info.key]);
  }
  // A file named by --config/SEMANTIC_CONFIG is pinned; the default one is found by the server itself.
  if (resolved.file && resolved.location.explicit) out.SEMANTIC_CONFIG = resolved.file;
  return out;
}

// ---- the command ----

export type Exec = (cmd: string[]) => { code: number; stdout: string; stderr: string };

export type ServiceContext = {
  platform: NodeJS.Platform;
  env: Env;
  home: string;
  uid: number;
  bunPath: string;
  repoRoot: string;
  exec: Exec;
  out: (s: string) => void;
  err: (s: string) => void;
  /** Whether `bun run setup` has built what the server needs. */
  setupDone: () => boolean;
  /** GET url with a short timeout: the status code, or null when nothing answers. */
  probe: (url: string) => Promise<number | null>;
  sleep: (ms: number) => void;
};

const USAGE = `Usage: bun run service:<install|uninstall|status> [options] [server flags]
  --label <label>   launchd label (default ${DEFAULT_LABEL})
  --write           Linux: write the systemd unit (default: print it)
  --enable          Linux, with --write: systemctl --user daemon-reload && enable --now
Server flags (e.g. --port 9000, --config <path>) are validated and kept in the service's environment.`;

type Parsed = { command: string; label: string; write: boolean; enable: boolean; serverArgs: string[] };

function parse(argv: string[]): Parsed {
  const [command = "", ...rest] = argv;
  const p: Parsed = { command, label: DEFAULT_LABEL, write: false, enable: false, serverArgs: [] };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "--") continue;
    else if (a === "--write") p.write = true;
    else if (a === "--enable") p.enable = true;
    else if (a === "--label") p.label = rest[++i] ?? "";
    else if (a.startsWith("--label=")) p.label = a.slice(8);
    else p.serverArgs.push(a);
  }
  return p;
}

export function realContext(): ServiceContext {
  return {
    platform: process.platform,
    env: process.env,
    home: homedir(),
    uid: process.getuid?.() ?? 0,
    bunPath: process.execPath,
    repoRoot,
    exec: (cmd) => {
      try {
        const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
        return { code: r.exitCode ?? 1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
      } catch (e) {
        return { code: 127, stdout: "", stderr: (e as Error).message };
      }
    },
    out: (s) => console.log(s),
    err: (s) => console.error(s),
    setupDone: () => existsSync(ffiLibraryPath),
    probe: async (url) => {
      try {
        return (await fetch(url, { signal: AbortSignal.timeout(1500) })).status;
      } catch {
        return null;
      }
    },
    sleep: (ms) => Bun.sleepSync(ms),
  };
}

function readyUrl(c: Config): string {
  const host = c.host === "0.0.0.0" ? "127.0.0.1" : c.host === "::" ? "::1" : c.host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${c.port}/ready`;
}

async function reportReady(ctx: ServiceContext, c: Config): Promise<void> {
  if (c.port === 0) return;
  const url = readyUrl(c);
  const status = await ctx.probe(url);
  ctx.out(status === null ? `server: nothing answers at ${url}` : status === 200 ? `server: ready at ${url}` : `server: answers ${status} at ${url} (loading?)`);
}

/** Runs one command; returns the exit code (0 ok, 1 failed, 2 bad configuration or usage, 3 not installed). */
export async function runService(argv: string[], ctx: ServiceContext = realContext()): Promise<number> {
  const p = parse(argv);
  if (!["install", "uninstall", "status"].includes(p.command)) {
    ctx.err(USAGE);
    return p.command === "help" || p.command === "--help" ? 0 : 2;
  }
  if (ctx.platform !== "darwin" && ctx.platform !== "linux") {
    ctx.err(`service:${p.command} supports macOS (launchd) and Linux (systemd user units), not ${ctx.platform}`);
    return 1;
  }
  let resolved: Resolved;
  try {
    resolved = resolveConfig(p.serverArgs, ctx.env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    ctx.err(e.message);
    return 2;
  }
  const bunPath = resolve(ctx.bunPath);
  const logDir = join(ctx.home, "Library", "Logs", "semantic");
  let opts: ServiceOptions;
  try {
    opts = {
      label: p.label,
      bunPath,
      entry: join(ctx.repoRoot, "shared", "main.ts"),
      workingDirectory: ctx.repoRoot,
      env: serviceEnv(ctx.env, resolved, bunPath),
      logDir,
      restartSeconds: 10,
      stopTimeoutSeconds: Math.ceil(resolved.config.shutdownGraceMs / 1000) + 15,
    };
    checkOptions(opts);
  } catch (e) {
    ctx.err((e as Error).message);
    return 2;
  }
  if (/[\\/](_npx|\.bun[\\/]install[\\/]cache)[\\/]/.test(bunPath)) {
    ctx.err(`warning: Bun runs from a package cache (${bunPath}), which may be cleaned; install Bun ${Bun.version} so the service keeps a stable path`);
  }
  return ctx.platform === "darwin" ? launchd(p, opts, resolved, ctx) : systemd(p, opts, resolved, ctx);
}

async function launchd(p: Parsed, opts: ServiceOptions, resolved: Resolved, ctx: ServiceContext): Promise<number> {
  const domain = `gui/${ctx.uid}`;
  const target = `${domain}/${p.label}`;
  const plistPath = join(ctx.home, "Library", "LaunchAgents", `${p.label}.plist`);
  if (p.command === "install") {
    if (!ctx.setupDone()) {
      ctx.err("the server is not built yet: run `bun run setup` first");
      return 1;
    }
    mkdirSync(opts.logDir, { recursive: true, mode: 0o700 });
    // 0600: the environment may carry API keys.
    writeFileAtomic(plistPath, launchdPlist(opts), 0o600);
    ctx.exec(["launchctl", "bootout", target]); // a previous version, if loaded
    ctx.exec(["launchctl", "enable", target]);
    let r = ctx.exec(["launchctl", "bootstrap", domain, plistPath]);
    for (let i = 0; i < 5 && r.code !== 0; i++) {
      ctx.sleep(1000); // bootout returns before the old instance has exited
      r = ctx.exec(["launchctl", "bootstrap", domain, plistPath]);
    }
    if (r.code !== 0) {
      ctx.err(`launchctl bootstrap ${domain} ${plistPath} failed (${r.code}): ${(r.stderr || r.stdout).trim()}`);
      return 1;
    }
    ctx.out(`installed launchd agent ${p.label}: ${plistPath}`);
    ctx.out(`it starts at login and restarts on exit; logs: ${opts.logDir}/semantic.{out,err}.log`);
    ctx.out(`serving on ${readyUrl(resolved.config).replace(/\/ready$/, "")} once the model is loaded; check with \`bun run service:status\``);
    return 0;
  }
  if (p.command === "uninstall") {
    const r = ctx.exec(["launchctl", "bootout", target]);
    ctx.out(r.code === 0 ? `stopped and unloaded ${target}` : `${target} was not loaded`);
    if (existsSync(plistPath)) {
      rmSync(plistPath);
      ctx.out(`removed ${plistPath}`);
    } else ctx.out(`no ${plistPath}`);
    return 0;
  }
  const r = ctx.exec(["launchctl", "print", target]);
  if (r.code !== 0) {
    ctx.out(`${target} is not loaded${existsSync(plistPath) ? ` (but ${plistPath} exists: bun run service:install)` : ""}`);
    return 3;
  }
  ctx.out(r.stdout.trimEnd());
  await reportReady(ctx, resolved.config);
  return 0;
}

async function systemd(p: Parsed, opts: ServiceOptions, resolved: Resolved, ctx: ServiceContext): Promise<number> {
  const configHome = ctx.env.XDG_CONFIG_HOME ? resolve(ctx.env.XDG_CONFIG_HOME) : join(ctx.home, ".config");
  const unitPath = join(configHome, "systemd", "user", `${SYSTEMD_UNIT}.service`);
  const enableCmd = `systemctl --user daemon-reload && systemctl --user enable --now ${SYSTEMD_UNIT}`;
  const run = (cmd: string[]) => {
    const r = ctx.exec(cmd);
    if (r.code !== 0) ctx.err(`${cmd.join(" ")} failed (${r.code}): ${(r.stderr || r.stdout).trim()}`);
    return r.code === 0;
  };
  if (p.command === "install") {
    const unit = systemdUnit(opts);
    if (!p.write) {
      ctx.out(unit);
      ctx.err(`This is Linux: the service is a systemd user unit (launchd is macOS only). Nothing was written.`);
      ctx.err(`To install it: bun run service:install --write [--enable], or save the unit above as ${unitPath} and run:`);
      ctx.err(`  ${enableCmd}`);
      return 0;
    }
    if (!ctx.setupDone()) {
      ctx.err("the server is not built yet: run `bun run setup` first");
      return 1;
    }
    writeFileAtomic(unitPath, unit, 0o600);
    ctx.out(`wrote systemd user unit ${unitPath} (systemd, not launchd: this is Linux)`);
    if (!p.enable) {
      ctx.out(`to start it now and at login: ${enableCmd}`);
      ctx.out(`to keep it running when you are logged out: loginctl enable-linger ${ctx.env.USER ?? "$USER"}`);
      return 0;
    }
    if (!run(["systemctl", "--user", "daemon-reload"]) || !run(["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT])) return 1;
    ctx.out(`enabled and started ${SYSTEMD_UNIT}; logs: journalctl --user -u ${SYSTEMD_UNIT} -f`);
    return 0;
  }
  if (p.command === "uninstall") {
    const steps = `systemctl --user disable --now ${SYSTEMD_UNIT} && rm ${unitPath} && systemctl --user daemon-reload`;
    if (!p.write) {
      ctx.out(`This is Linux (systemd user unit, not launchd). Nothing was changed; to remove the service: bun run service:uninstall --write, or: ${steps}`);
      return 0;
    }
    ctx.exec(["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]);
    if (existsSync(unitPath)) {
      rmSync(unitPath);
      ctx.out(`removed ${unitPath}`);
    } else ctx.out(`no ${unitPath}`);
    ctx.exec(["systemctl", "--user", "daemon-reload"]);
    return 0;
  }
  ctx.out(`systemd user unit ${unitPath}: ${existsSync(unitPath) ? "written" : "not written (bun run service:install --write)"}`);
  const r = ctx.exec(["systemctl", "--user", "status", "--no-pager", SYSTEMD_UNIT]);
  ctx.out(r.code === 127 ? "systemctl is not available here" : (r.stdout || r.stderr).trimEnd());
  await reportReady(ctx, resolved.config);
  return existsSync(unitPath) ? 0 : 3;
}

if (import.meta.main) process.exit(await runService(process.argv.slice(2)));
