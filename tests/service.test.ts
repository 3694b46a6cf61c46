// The service definitions: the launchd property list parses (npm `plist`, and Python's
// plistlib when there) and has every key launchd needs; the systemd unit passes
// `systemd-analyze verify` where it exists and an INI parse everywhere; `service:install` on
// Linux prints the unit, says it is systemd, and writes nothing; on macOS (driven here with a
// fake launchctl) it writes the plist and bootstraps it into gui/<uid>.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { parse as parsePlist } from "plist";
import { resolveConfig } from "../shared/config.ts";
import { repoRoot } from "../shared/paths.ts";
import { DEFAULT_LABEL, launchdPlist, runService, type ServiceContext, type ServiceOptions, serviceEnv, systemdUnit } from "../scripts/service.ts";

const root = mkdtempSync(join(tmpdir(), "semantic-service-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => {
  const d = join(root, `case-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

const tricky = `a <&> "quoted" 'single' %h $HOME \\back`;

function options(extra: Partial<ServiceOptions> = {}): ServiceOptions {
  return {
    label: DEFAULT_LABEL,
    bunPath: process.execPath,
    entry: join(repoRoot, "shared", "main.ts"),
    workingDirectory: repoRoot,
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", SEMANTIC_CONFIG: "/Users/me/.semantic/config.json", SEMANTIC_TRICKY: tricky },
    logDir: "/Users/me/Library/Logs/semantic",
    restartSeconds: 10,
    stopTimeoutSeconds: 45,
    ...extra,
  };
}

describe("launchd property list", () => {
  test("parses as a property list and has every key launchd needs", () => {
    const xml = launchdPlist(options());
    const p = parsePlist(xml) as Record<string, unknown>;
    expect(p.Label).toBe(DEFAULT_LABEL);
    const args = p.ProgramArguments as string[];
    expect(args[0]).toBe(process.execPath);
    expect(isAbsolute(args[0])).toBe(true);
    expect(args[1]).toBe(join(repoRoot, "shared", "main.ts"));
    expect(existsSync(args[1])).toBe(true);
    expect(p.WorkingDirectory).toBe(repoRoot);
    const env = p.EnvironmentVariables as Record<string, string>;
    expect(env.PATH).toBe("/usr/local/bin:/usr/bin:/bin");
    expect(env.SEMANTIC_CONFIG).toBe("/Users/me/.semantic/config.json");
    expect(env.SEMANTIC_TRICKY).toBe(tricky); // escaped in XML, and back
    expect(p.RunAtLoad).toBe(true);
    expect(p.KeepAlive).toBe(true);
    expect(p.ThrottleInterval).toBe(10);
    expect(p.ExitTimeOut).toBe(45);
    expect(p.StandardOutPath).toBe("/Users/me/Library/Logs/semantic/semantic.out.log");
    expect(p.StandardErrorPath).toBe("/Users/me/Library/Logs/semantic/semantic.err.log");
    expect(xml).toContain("<integer>10</integer>");
    expect(xml).toContain("&lt;&amp;&gt;");
  });

  test("Python's plistlib (Apple's format, an independent parser) reads the same values", () => {
    const python = Bun.which("python3");
    if (!python) return;
    const file = join(freshDir(), "a.plist");
    writeFileSync(file, launchdPlist(options({ args: ["--port", "9000"] })));
    const r = Bun.spawnSync([python, "-c", "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))", file]);
    expect(r.stderr.toString()).toBe("");
    const p = JSON.parse(r.stdout.toString());
    expect(p.ProgramArguments).toEqual([process.execPath, join(repoRoot, "shared", "main.ts"), "--port", "9000"]);
    expect(p.EnvironmentVariables.SEMANTIC_TRICKY).toBe(tricky);
    expect([p.RunAtLoad, p.KeepAlive, p.ThrottleInterval]).toEqual([true, true, 10]);
  });

  test("refuses what it cannot write safely: relative paths, control characters, odd labels", () => {
    expect(() => launchdPlist(options({ bunPath: "bun" }))).toThrow("bunPath must be an absolute path");
    expect(() => launchdPlist(options({ workingDirectory: "." }))).toThrow("workingDirectory must be an absolute path");
    expect(() => launchdPlist(options({ env: { X: "a\u0001b" } }))).toThrow("control characters");
    expect(() => systemdUnit(options({ env: { X: "a\nExecStartPre=/bin/evil" } }))).toThrow("control characters");
    expect(() => launchdPlist(options({ label: "a/b" }))).toThrow("label");
    expect(() => launchdPlist(options({ env: { "BAD NAME": "x" } }))).toThrow("environment variable name");
  });
});

/** A small INI reader with systemd's quoting (enough to check what the unit says). */
function parseUnit(text: string): Record<string, [string, string][]> {
  const sections: Record<string, [string, string][]> = {};
  let current: [string, string][] | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = line.match(/^\[([A-Za-z]+)\]$/);
    if (header) {
      current = sections[header[1]] = [];
      continue;
    }
    const eq = line.indexOf("=");
    if (!current || eq <= 0) throw new Error(`not a unit line: ${raw}`);
    current.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return sections;
}

/** systemd's word splitting: "quoted words" with \\ and \" escapes; %% -> %, and $$ -> $ in commands. */
function unitWords(value: string, command: boolean): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of value.matchAll(re)) {
    let w = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2];
    w = w.replace(/%%/g, "%");
    if (command) w = w.replace(/\$\$/g, "$");
    words.push(w);
  }
  return words;
}

describe("systemd user unit", () => {
  const opts = options({ args: ["--model", "my model$1.gguf"] });
  const unit = systemdUnit(opts);

  test("parses as a unit with [Unit], [Service] and [Install] and says what it is", () => {
    const s = parseUnit(unit);
    expect(Object.keys(s)).toEqual(["Unit", "Service", "Install"]);
    const service = Object.fromEntries(s.Service.filter(([k]) => k !== "Environment"));
    const exec = unitWords(service.ExecStart, true);
    expect(exec).toEqual([process.execPath, join(repoRoot, "shared", "main.ts"), "--model", "my model$1.gguf"]);
    expect(isAbsolute(exec[0])).toBe(true);
    expect(service.WorkingDirectory).toBe(repoRoot);
    expect(service.Restart).toBe("always");
    expect(service.RestartSec).toBe("10");
    expect(service.TimeoutStopSec).toBe("45");
    expect(service.StandardOutput).toBe("journal");
    expect(service.StandardError).toBe("journal");
    const env = Object.fromEntries(s.Service.filter(([k]) => k === "Environment").map(([, v]) => {
      const [assignment] = unitWords(v, false);
      const eq = assignment.indexOf("=");
      return [assignment.slice(0, eq), assignment.slice(eq + 1)];
    }));
    expect(env).toEqual(opts.env);
    expect(Object.fromEntries(s.Install)).toEqual({ WantedBy: "default.target" });
    expect(unit).toContain("systemd");
    expect(unit).toContain("launchd");
  });

  test("systemd-analyze verify accepts it (where systemd-analyze exists)", () => {
    const analyze = Bun.which("systemd-analyze");
    if (!analyze) return;
    const dir = freshDir();
    const file = join(dir, "semantic.service");
    writeFileSync(file, unit);
    const r = Bun.spawnSync([analyze, "verify", file], { env: { ...process.env, SYSTEMD_LOG_LEVEL: "notice" } });
    // It exits 0 even for unknown keys, so any message at all is a failure.
    expect(r.stderr.toString() + r.stdout.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    // And it does complain about a bad key, so the silence above means something.
    writeFileSync(file, unit.replace("Restart=always", "Restart=always\nRestartt=1"));
    expect(Bun.spawnSync([analyze, "verify", file]).stderr.toString()).toContain("Unknown key");
  });
});

describe("the service's environment", () => {
  test("SEMANTIC_* of the shell and settings given as flags, with absolute paths; no secret in the arguments", () => {
    const dir = freshDir();
    const file = join(dir, "c.json");
    writeFileSync(file, "{}");
    const env = { PATH: "/usr/bin:/bin", SEMANTIC_HOME: join(dir, "home"), SEMANTIC_PORT: "9000", OTHER: "no" };
    const resolved = resolveConfig(["--api-keys", "k1,k2", "--host", "0.0.0.0", "--kv-cache-dir", "kv", "--config", file], env);
    const out = serviceEnv(env, resolved, "/opt/bun/bin/bun");
    expect(out).toEqual({
      PATH: "/opt/bun/bin:/usr/bin:/bin",
      SEMANTIC_HOME: join(dir, "home"),
      SEMANTIC_PORT: "9000",
      SEMANTIC_API_KEYS: "k1,k2",
      SEMANTIC_HOST: "0.0.0.0",
      SEMANTIC_KV_CACHE_DIR: join(process.cwd(), "kv"),
      SEMANTIC_CONFIG: file,
    });
  });
});

type Call = string[];

function fakeContext(platform: NodeJS.Platform, home: string, env: Record<string, string> = {}, failBootstrap = false) {
  const calls: Call[] = [];
  const out: string[] = [];
  const err: string[] = [];
  const ctx: ServiceContext = {
    platform,
    env: { PATH: "/usr/bin:/bin", SEMANTIC_HOME: join(home, ".semantic"), ...env },
    home,
    uid: 501,
    bunPath: process.execPath,
    repoRoot,
    exec: (cmd) => {
      calls.push(cmd);
      if (cmd[1] === "bootstrap" && failBootstrap) return { code: 5, stdout: "", stderr: "Bootstrap failed: 5: Input/output error" };
      if (cmd[1] === "print") return { code: 0, stdout: `gui/501/${DEFAULT_LABEL} = {\n\tstate = running\n}`, stderr: "" };
      return { code: 0, stdout: "", stderr: "" };
    },
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    setupDone: () => true,
    probe: async () => 200,
    sleep: () => {},
  };
  return { ctx, calls, out, err };
}

describe("service:install / uninstall / status on macOS (fake launchctl)", () => {
  test("install writes the plist (0600) under ~/Library/LaunchAgents and bootstraps it into gui/<uid>", async () => {
    const home = freshDir();
    const { ctx, calls, out } = fakeContext("darwin", home, { SEMANTIC_API_KEYS: "k1" });
    expect(await runService(["install", "--port", "9100"], ctx)).toBe(0);
    const plistPath = join(home, "Library", "LaunchAgents", `${DEFAULT_LABEL}.plist`);
    expect(statSync(plistPath).mode & 0o777).toBe(0o600);
    const p = parsePlist(readFileSync(plistPath, "utf8")) as Record<string, any>;
    expect(p.ProgramArguments).toEqual([process.execPath, join(repoRoot, "shared", "main.ts")]);
    expect(p.EnvironmentVariables.SEMANTIC_PORT).toBe("9100");
    expect(p.EnvironmentVariables.SEMANTIC_API_KEYS).toBe("k1");
    expect(p.StandardOutPath.startsWith(join(home, "Library", "Logs", "semantic"))).toBe(true);
    expect(existsSync(join(home, "Library", "Logs", "semantic"))).toBe(true);
    expect(calls).toEqual([
      ["launchctl", "bootout", `gui/501/${DEFAULT_LABEL}`],
      ["launchctl", "enable", `gui/501/${DEFAULT_LABEL}`],
      ["launchctl", "bootstrap", "gui/501", plistPath],
    ]);
    expect(out.join("\n")).toContain(`installed launchd agent ${DEFAULT_LABEL}`);

    const status = fakeContext("darwin", home);
    expect(await runService(["status"], status.ctx)).toBe(0);
    expect(status.calls).toEqual([["launchctl", "print", `gui/501/${DEFAULT_LABEL}`]]);
    expect(status.out.join("\n")).toContain("state = running");
    expect(status.out.join("\n")).toContain("server: ready at http://127.0.0.1:8080/ready");

    const un = fakeContext("darwin", home);
    expect(await runService(["uninstall"], un.ctx)).toBe(0);
    expect(un.calls).toEqual([["launchctl", "bootout", `gui/501/${DEFAULT_LABEL}`]]);
    expect(existsSync(plistPath)).toBe(false);
  });

  test("a failed bootstrap is reported (exit 1); an invalid configuration installs nothing (exit 2)", async () => {
    const home = freshDir();
    const failing = fakeContext("darwin", home, {}, true);
    expect(await runService(["install"], failing.ctx)).toBe(1);
    expect(failing.err.join("\n")).toContain("Bootstrap failed: 5");
    expect(failing.calls.filter((c) => c[1] === "bootstrap").length).toBe(6); // retried while the old instance exits

    const home2 = freshDir();
    const bad = fakeContext("darwin", home2, { SEMANTIC_MEMORY_BUDGET: "-1" });
    expect(await runService(["install"], bad.ctx)).toBe(2);
    expect(bad.err.join("\n")).toContain("memoryBudgetBytes (env SEMANTIC_MEMORY_BUDGET)");
    expect(bad.calls).toEqual([]);
    expect(existsSync(join(home2, "Library"))).toBe(false);
  });
});

describe("service:install on Linux: systemd, not launchd", () => {
  // Linux only: on macOS the same command would load a real launchd agent.
  test.skipIf(process.platform !== "linux")("`bun scripts/service.ts install` prints the unit, says it is systemd, and writes nothing", () => {
    const home = freshDir();
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SEMANTIC_") && k !== "XDG_CONFIG_HOME"));
    const r = Bun.spawnSync([process.execPath, "scripts/service.ts", "install"], {
      cwd: repoRoot,
      env: { ...inherited, HOME: home, SEMANTIC_HOME: join(home, ".semantic"), BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
    });
    const out = r.stdout.toString();
    const err = r.stderr.toString();
    expect(r.exitCode).toBe(0);
    const s = parseUnit(out);
    expect(Object.keys(s)).toEqual(["Unit", "Service", "Install"]);
    expect(unitWords(Object.fromEntries(s.Service).ExecStart, true)[0]).toBe(process.execPath);
    expect(err).toContain("systemd user unit (launchd is macOS only)");
    expect(err).toContain("Nothing was written");
    expect(err).toContain("systemctl --user daemon-reload && systemctl --user enable --now semantic");
    expect(out + err).not.toContain("launchctl");
    expect(readdirSync(home)).toEqual([]);
  });

  test("--write writes the unit (0600); --enable runs systemctl --user daemon-reload and enable --now", async () => {
    const home = freshDir();
    const { ctx, calls, out } = fakeContext("linux", home);
    expect(await runService(["install", "--write"], ctx)).toBe(0);
    const unitPath = join(home, ".config", "systemd", "user", "semantic.service");
    expect(statSync(unitPath).mode & 0o777).toBe(0o600);
    expect(parseUnit(readFileSync(unitPath, "utf8")).Service.length).toBeGreaterThan(5);
    expect(calls).toEqual([]);
    expect(out.join("\n")).toContain("systemd, not launchd");

    const enable = fakeContext("linux", home, { XDG_CONFIG_HOME: join(home, "xdg") });
    expect(await runService(["install", "--write", "--enable"], enable.ctx)).toBe(0);
    expect(existsSync(join(home, "xdg", "systemd", "user", "semantic.service"))).toBe(true);
    expect(enable.calls).toEqual([
      ["systemctl", "--user", "daemon-reload"],
      ["systemctl", "--user", "enable", "--now", "semantic"],
    ]);

    const dry = fakeContext("linux", home);
    expect(await runService(["uninstall"], dry.ctx)).toBe(0);
    expect(existsSync(unitPath)).toBe(true);
    expect(dry.calls).toEqual([]);
    const un = fakeContext("linux", home);
    expect(await runService(["uninstall", "--write"], un.ctx)).toBe(0);
    expect(existsSync(unitPath)).toBe(false);
    expect(un.calls[0]).toEqual(["systemctl", "--user", "disable", "--now", "semantic"]);
  });
});
