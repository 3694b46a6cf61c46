// Settings: precedence (flag > env > file > default) for every kind of key, validation errors
// that name the key, the source and the expected value, JSON/TOML files that round-trip, the
// help generated from the schema, exit code 2 from the command line, and atomic `config set`.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import {
  type Config,
  ConfigError,
  configHelp,
  configOrExit,
  configSchema,
  keyInfos,
  loadConfig,
  modelAliasSpec,
  parseSize,
  resolveConfig,
} from "../shared/config.ts";
import { defaultModelPath, repoRoot } from "../shared/paths.ts";
import { runConfigCommand } from "../scripts/config.ts";

const root = mkdtempSync(join(tmpdir(), "semantic-config-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A fresh data folder and an environment with nothing but it (no SEMANTIC_* of the caller). */
function fresh(extra: Record<string, string> = {}) {
  const dir = join(root, `case-${n++}`);
  mkdirSync(dir, { recursive: true });
  return { dir, env: { SEMANTIC_HOME: join(dir, "home"), ...extra } as Record<string, string> };
}

function write(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** The ConfigError `fn` throws. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("defaults", () => {
  test("every key has its default, from the schema, when nothing is given", () => {
    const { env } = fresh();
    const r = resolveConfig([], env);
    expect(r.file).toBeNull();
    expect(r.config).toEqual({
      model: defaultModelPath(env),
      host: "127.0.0.1",
      port: 8080,
      apiKeys: [],
      allowedHosts: [],
      allowedOrigins: [],
      modelAliases: { "claude-*": "*" },
      weights: "auto",
      cacheDir: join(env.SEMANTIC_HOME, "cache"),
      blockTokens: 256,
      memoryBudgetBytes: Math.floor(totalmem() / 4 / 2 ** 20) * 2 ** 20,
      diskBudgetBytes: 20 * 2 ** 30,
      maxBatch: 8,
      maxQueued: 64,
      maxQueuedTokens: 262144,
      prefillChunk: 512,
      agentWaitMs: 30000,
      shutdownGraceMs: 30000,
      logLevel: "info",
      logPrompts: false,
      bodyLimitBytes: 8 * 2 ** 20,
    } satisfies Config);
    for (const s of Object.values(r.sources)) expect(s.kind).toBe("default");
    // Every key has a description, and the defaults pass their own schema.
    for (const info of keyInfos(configSchema(env))) expect(info.description.length).toBeGreaterThan(10);
  });

  test("sizes: 1024-based KiB/MiB/GiB and K/M/G, 1000-based KB/MB/GB", () => {
    expect(parseSize("8GiB")).toBe(8 * 2 ** 30);
    expect(parseSize("512MB")).toBe(512e6);
    expect(parseSize("1.5G")).toBe(1.5 * 2 ** 30);
    expect(parseSize(" 4096 ")).toBe(4096);
    expect(parseSize("-5")).toBe(-5);
    expect(parseSize("8 gigs")).toBeNull();
  });
});

describe("precedence: flag > env > file > default", () => {
  // One key of each kind: [key, flag args, env name, env text, file value, expected values for flag, env, file].
  const cases: [keyof Config, string[], string, string, unknown, unknown, unknown, unknown][] = [
    ["host", ["--host", "::1"], "SEMANTIC_HOST", "localhost", "127.0.0.2", "::1", "localhost", "127.0.0.2"],
    ["port", ["--port", "9001"], "SEMANTIC_PORT", "9002", 9003, 9001, 9002, 9003],
    ["memoryBudgetBytes", ["--memory-budget", "1GiB"], "SEMANTIC_MEMORY_BUDGET", "512MB", "64MiB", 2 ** 30, 512e6, 64 * 2 ** 20],
    ["diskBudgetBytes", ["--disk-budget=0"], "SEMANTIC_DISK_BUDGET", "1000", 5 * 2 ** 30, 0, 1000, 5 * 2 ** 30],
    ["logPrompts", ["--log-prompts"], "SEMANTIC_LOG_PROMPTS", "false", true, true, false, true],
    ["logPrompts", ["--no-log-prompts"], "SEMANTIC_LOG_PROMPTS", "yes", false, false, true, false],
    ["logLevel", ["--log-level", "debug"], "SEMANTIC_LOG_LEVEL", "WARN", "error", "debug", "warn", "error"],
    ["weights", ["--weights", "dense"], "SEMANTIC_WEIGHTS", "quantized", "auto", "dense", "quantized", "auto"],
    ["blockTokens", ["--block-tokens", "64"], "SEMANTIC_BLOCK_TOKENS", "128", 512, 64, 128, 512],
    ["apiKeys", ["--api-keys", "f1", "--api-keys", "f2,f3"], "SEMANTIC_API_KEYS", " e1 , e2 ", ["d1"], ["f1", "f2", "f3"], ["e1", "e2"], ["d1"]],
    ["modelAliases", ["--model-aliases", "gpt-*=*"], "SEMANTIC_MODEL_ALIASES", "claude-*=*,o1", { "x-*": "*" }, { "gpt-*": "*" }, { "claude-*": "*", o1: "*" }, { "x-*": "*" }],
    ["maxBatch", ["--max-batch", "2"], "SEMANTIC_MAX_BATCH", "3", 4, 2, 3, 4],
    ["agentWaitMs", ["--agent-wait-ms", "0"], "SEMANTIC_AGENT_WAIT_MS", "10", 20, 0, 10, 20],
    ["bodyLimitBytes", ["--body-limit", "1MiB"], "SEMANTIC_MAX_BODY_BYTES", "2048", "16KiB", 2 ** 20, 2048, 16 * 1024],
    ["model", ["--model", "org/flag-model"], "SEMANTIC_MODEL", "org/env-model", "org/file-model", "org/flag-model", "org/env-model", "org/file-model"],
  ];

  for (const [key, flags, envName, envText, fileValue, fromFlag, fromEnv, fromFile] of cases) {
    test(`${key} (${flags.join(" ")})`, () => {
      const { dir, env } = fresh();
      const file = write(dir, "c.json", JSON.stringify({ [key]: fileValue }));
      const all = resolveConfig([...flags, "--config", file], { ...env, [envName]: envText });
      expect(all.config[key] as unknown).toEqual(fromFlag);
      expect(all.sources[key].kind).toBe("flag");
      const noFlag = resolveConfig(["--config", file], { ...env, [envName]: envText });
      expect(noFlag.config[key] as unknown).toEqual(fromEnv);
      expect(noFlag.sources[key]).toEqual({ kind: "env", name: envName });
      const fileOnly = resolveConfig([], { ...env, SEMANTIC_CONFIG: file, [envName]: "" }); // empty = unset
      expect(fileOnly.config[key] as unknown).toEqual(fromFile);
      expect(fileOnly.sources[key]).toEqual({ kind: "file", name: file });
      expect(resolveConfig([], env).sources[key].kind).toBe("default");
    });
  }

  test("the default file <SEMANTIC_HOME>/config.json is read when it exists, TOML by --config", () => {
    const { dir, env } = fresh();
    mkdirSync(env.SEMANTIC_HOME);
    write(env.SEMANTIC_HOME, "config.json", '{"port": 7000}');
    expect(loadConfig([], env).port).toBe(7000);
    const toml = write(dir, "c.toml", "port = 7001\n");
    expect(loadConfig(["--config", toml], env).port).toBe(7001);
    expect(loadConfig([`--config=${toml}`], env).port).toBe(7001);
  });

  test("paths: ~/ expanded, relative cacheDir from a file is taken from the file's folder, a hub id is kept", () => {
    const { dir, env } = fresh();
    const file = write(dir, "c.json", JSON.stringify({ cacheDir: "kv", model: "mlx-community/gemma-3-12b-it-4bit" }));
    const c = loadConfig(["--config", file], env);
    expect(c.cacheDir).toBe(join(dir, "kv"));
    expect(c.model).toBe("mlx-community/gemma-3-12b-it-4bit");
    expect(loadConfig(["--kv-cache-dir", "~/kv"], env).cacheDir).toBe(join(homedir(), "kv"));
    write(dir, "m.gguf", "");
    expect(loadConfig(["--config", write(dir, "m.json", '{"model": "./m.gguf"}')], env).model).toBe(join(dir, "m.gguf"));
  });

  test("modelAliasSpec gives the comma list the server's ModelResolver reads", () => {
    expect(modelAliasSpec({ "claude-*": "*", "gpt-4o": "smol" })).toBe("claude-*=*,gpt-4o=smol");
  });
});

describe("invalid values name the key, the source and the expected value", () => {
  const cases: [string, (dir: string) => { argv?: string[]; env?: Record<string, string>; file?: string }, RegExp[]][] = [
    ["negative memory budget (flag)", () => ({ argv: ["--memory-budget", "-5"] }), [/memoryBudgetBytes \(flag --memory-budget\)/, /expected a size of at least 16 MiB/, /got -5/]],
    ["negative memory budget (env)", () => ({ env: { SEMANTIC_MEMORY_BUDGET: "-1GiB" } }), [/memoryBudgetBytes \(env SEMANTIC_MEMORY_BUDGET\)/, /got -1073741824/]],
    ["negative disk budget (file)", () => ({ file: '{"diskBudgetBytes": -1}' }), [/diskBudgetBytes \(file .*c\.json\)/, /expected a size of at least 0 bytes/]],
    ["not a size", () => ({ env: { SEMANTIC_DISK_BUDGET: "lots" } }), [/diskBudgetBytes \(env SEMANTIC_DISK_BUDGET\)/, /"8GiB"/, /got "lots"/]],
    ["unknown key in the file", () => ({ file: '{"block_tokens": 64}' }), [/block_tokens \(file .*\): unknown key \(did you mean "blockTokens"\?\)/]],
    ["unknown flag", () => ({ argv: ["--prot", "80"] }), [/command line: Unknown option '--prot'/, /see --help/]],
    ["wrong type: string for a port", () => ({ file: '{"port": "abc"}' }), [/port \(file .*\): expected an integer from 0 to 65535; got "abc"/]],
    ["wrong type: boolean for a port", () => ({ file: '{"port": true}' }), [/port \(file .*\): expected an integer/, /got true/]],
    ["wrong type: string for a boolean in a file", () => ({ file: '{"logPrompts": "yes"}' }), [/logPrompts \(file .*\): expected true or false/]],
    ["wrong type: number for a list", () => ({ file: '{"allowedHosts": 5}' }), [/allowedHosts \(file .*\): expected a list of host names; got 5/]],
    ["not an integer", () => ({ env: { SEMANTIC_PORT: "80.5" } }), [/port \(env SEMANTIC_PORT\): expected an integer from 0 to 65535; got "80.5"/]],
    ["port out of range", () => ({ argv: ["--port", "70000"] }), [/port \(flag --port\): expected an integer from 0 to 65535; got 70000/]],
    ["block size not a power of two", () => ({ env: { SEMANTIC_BLOCK_TOKENS: "100" } }), [/blockTokens \(env SEMANTIC_BLOCK_TOKENS\): expected one of 16, 32, 64, 128, 256, 512, 1024, 2048, 4096; got 100/]],
    ["block size too large", () => ({ file: "blockTokens = 8192\n", }), [/blockTokens \(file .*c\.toml\)/]],
    ["batch of zero", () => ({ argv: ["--max-batch=0"] }), [/maxBatch \(flag --max-batch\): expected an integer from 1 to 256; got 0/]],
    ["bad log level", () => ({ env: { SEMANTIC_LOG_LEVEL: "loud" } }), [/logLevel \(env SEMANTIC_LOG_LEVEL\): expected one of debug, info, warn, error; got "loud"/]],
    ["bad alias", () => ({ env: { SEMANTIC_MODEL_ALIASES: "=x" } }), [/modelAliases \(env SEMANTIC_MODEL_ALIASES\): expected pattern=target pairs/]],
    ["missing flag value", () => ({ argv: ["--port"] }), [/command line: Option '--port <value>' argument missing/]],
    ["positional argument", () => ({ argv: ["serve"] }), [/command line: .*serve/]],
    ["unreadable file: missing", (dir) => ({ argv: ["--config", join(dir, "nope.json")] }), [/file .*nope\.json \(from flag --config\): cannot read the config file: no such file/]],
    ["unreadable file: a folder", (dir) => ({ env: { SEMANTIC_CONFIG: dir } }), [/file .* \(from env SEMANTIC_CONFIG\): cannot read the config file/]],
    ["bad JSON", () => ({ file: '{"port": 80,}' }), [/file .*c\.json \(from flag --config\): not valid JSON/]],
    ["bad TOML", () => ({ file: 'port = 80\nhost = "x\n' }), [/file .*c\.toml \(from flag --config\): not valid TOML: .*Unterminated string/]],
    ["JSON that is not an object", () => ({ file: "[1, 2]" }), [/file .*c\.json \(from flag --config\): expected a JSON object of settings/]],
    ["non-loopback host without keys", () => ({ env: { SEMANTIC_HOST: "0.0.0.0" } }), [/host \(env SEMANTIC_HOST\): refusing to bind 0\.0\.0\.0 without API keys/]],
    ["non-loopback host from a file without keys", () => ({ file: '{"host": "192.168.1.5"}' }), [/host \(file .*\): refusing to bind 192\.168\.1\.5 without API keys/]],
  ];

  for (const [name, make, patterns] of cases) {
    test(name, () => {
      const { dir, env } = fresh();
      const c = make(dir);
      const argv = [...(c.argv ?? [])];
      if (c.file !== undefined) argv.push("--config", write(dir, /^\s*[{[]/.test(c.file) ? "c.json" : "c.toml", c.file));
      const e = configError(() => loadConfig(argv, { ...env, ...c.env }));
      for (const p of patterns) expect(e.message).toMatch(p);
      expect(e.message).toStartWith("invalid configuration");
    });
  }

  test("a bad value is reported even when a higher source overrides it, with every problem at once", () => {
    const { dir, env } = fresh();
    const file = write(dir, "c.json", JSON.stringify({ port: -1, maxQueued: 0, typo: 1 }));
    const e = configError(() => loadConfig(["--port", "80", "--config", file], { ...env, SEMANTIC_MAX_QUEUED: "x" }));
    expect(e.issues.map((i) => i.key).sort()).toEqual(["maxQueued", "maxQueued", "port", "typo"]);
    expect(e.message).toContain("(4 problems)");
  });

  test("API keys are never echoed in an error", () => {
    const { env } = fresh();
    const e = configError(() => loadConfig([], { ...env, SEMANTIC_API_KEYS: "secret one,two" }));
    expect(e.message).toContain("apiKeys (env SEMANTIC_API_KEYS)");
    expect(e.message).not.toContain("secret");
  });

  test("loopback names bind without keys; any host binds with keys", () => {
    const { env } = fresh();
    for (const host of ["127.0.0.1", "127.0.0.2", "localhost", "::1"]) expect(loadConfig(["--host", host], env).host).toBe(host);
    expect(loadConfig(["--host", "0.0.0.0"], { ...env, SEMANTIC_API_KEYS: "k1" }).apiKeys).toEqual(["k1"]);
  });
});

describe("files round-trip", () => {
  const full = {
    model: "org/model",
    host: "0.0.0.0",
    port: 9100,
    apiKeys: ["k1", "k2"],
    allowedHosts: ["box.local"],
    allowedOrigins: ["https://app.example"],
    modelAliases: { "claude-*": "*", "gpt-4o": "*" },
    weights: "quantized",
    cacheDir: "/var/tmp/semantic-kv",
    blockTokens: 128,
    memoryBudgetBytes: 4 * 2 ** 30,
    diskBudgetBytes: 10 ** 9,
    maxBatch: 4,
    maxQueued: 10,
    maxQueuedTokens: 1000,
    prefillChunk: 256,
    agentWaitMs: 5000,
    shutdownGraceMs: 1000,
    logLevel: "debug",
    logPrompts: true,
    bodyLimitBytes: 2 ** 20,
  } satisfies Config;

  test("JSON: every key, loaded, written back and loaded again, is the same", () => {
    const { dir, env } = fresh();
    const first = loadConfig(["--config", write(dir, "a.json", JSON.stringify(full))], env);
    expect(first).toEqual(full);
    const again = loadConfig(["--config", write(dir, "b.json", JSON.stringify(first))], env);
    expect(again).toEqual(full);
  });

  test("TOML: every key, with sizes as strings and aliases as a table", () => {
    const { dir, env } = fresh();
    const toml = `# a TOML config
model = "org/model"
host = "0.0.0.0"
port = 9100
apiKeys = ["k1", "k2"]
allowedHosts = ["box.local"]
allowedOrigins = ["https://app.example"]
weights = "quantized"
cacheDir = "/var/tmp/semantic-kv"
blockTokens = 128
memoryBudgetBytes = "4GiB"
diskBudgetBytes = "1GB"
maxBatch = 4
maxQueued = 10
maxQueuedTokens = 1000
prefillChunk = 256
agentWaitMs = 5000
shutdownGraceMs = 1000
logLevel = "debug"
logPrompts = true
bodyLimitBytes = "1MiB"

[modelAliases]
"claude-*" = "*"
"gpt-4o" = "*"
`;
    expect(loadConfig(["--config", write(dir, "c.toml", toml)], env)).toEqual(full);
  });
});

describe("help and the command line", () => {
  test("configHelp lists every key with its flag, environment variable, default and description", () => {
    const { env } = fresh();
    const help = configHelp(env);
    for (const info of keyInfos(configSchema(env))) {
      expect(help).toContain(`--${info.flag}`);
      expect(help).toContain(`env ${info.env}`);
      expect(help).toContain(`file key "${info.key}"`);
      expect(help.replace(/\s+/g, " ")).toContain(info.description.replace(/\s+/g, " "));
    }
    for (const s of ["SEMANTIC_HOST", "SEMANTIC_PORT", "SEMANTIC_MODEL", "SEMANTIC_API_KEYS", "SEMANTIC_HOME", "SEMANTIC_CONFIG", "Default: 8080", "Default: 127.0.0.1"]) {
      expect(help).toContain(s);
    }
    expect(help).toMatch(/flags, then environment variables, then the config file, then defaults/);
  });

  test("configOrExit: --help prints the help and exits 0; a bad setting prints the message and exits 2", () => {
    const { env } = fresh();
    const printed: string[] = [];
    const [log, error] = [console.log, console.error];
    console.log = (s: string) => printed.push(s);
    console.error = (s: string) => printed.push(s);
    const exit = (code: number): never => {
      throw new Error(`exit ${code}`);
    };
    try {
      expect(() => configOrExit(["--port", "1", "--help"], env, exit)).toThrow("exit 0");
      expect(printed.pop()).toContain("--memory-budget <size>");
      expect(() => configOrExit(["--port", "x"], env, exit)).toThrow("exit 2");
      expect(printed.pop()).toBe('invalid configuration: port (flag --port): expected an integer from 0 to 65535; got "x"');
      expect(configOrExit(["--port", "1"], env, exit).port).toBe(1);
    } finally {
      console.log = log;
      console.error = error;
    }
  });

  const cli = (args: string[], env: Record<string, string>) => {
    const { SEMANTIC_HOME: _h, SEMANTIC_CONFIG: _c, ...rest } = process.env;
    const clean = Object.fromEntries(Object.entries(rest).filter(([k]) => !k.startsWith("SEMANTIC_")));
    const r = Bun.spawnSync([process.execPath, "scripts/config.ts", ...args], { cwd: repoRoot, env: { ...clean, ...env } });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };

  test("a process with a bad configuration exits 2 with the message; a good one exits 0", () => {
    const { dir, env } = fresh();
    const bad = cli(["check"], { ...env, SEMANTIC_MEMORY_BUDGET: "-5" });
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("memoryBudgetBytes (env SEMANTIC_MEMORY_BUDGET): expected a size of at least 16 MiB");
    const badFile = cli(["check", "--config", write(dir, "c.toml", "port = [")], env);
    expect(badFile.code).toBe(2);
    expect(badFile.err).toContain("not valid TOML");
    const ok = cli(["check", "--port", "9000"], env);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("configuration ok");
    const help = cli(["help"], env);
    expect(help.code).toBe(0);
    for (const info of keyInfos(configSchema(env))) expect(help.out).toContain(`--${info.flag}`);
  });
});

describe("config set / get / unset / path", () => {
  const quiet = () => {
    const io = { lines: [] as string[], errors: [] as string[], out: (s: string) => io.lines.push(s), err: (s: string) => io.errors.push(s) };
    return io;
  };

  test("set writes the JSON file atomically with mode 0600; get reads the effective value", () => {
    const { env } = fresh();
    const io = quiet();
    expect(runConfigCommand(["path"], env, io)).toBe(0);
    const path = io.lines[0];
    expect(path).toBe(join(env.SEMANTIC_HOME, "config.json"));
    expect(existsSync(path)).toBe(false);

    expect(runConfigCommand(["set", "port", "9000"], env, io)).toBe(0);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(env.SEMANTIC_HOME).mode & 0o777).toBe(0o700);
    const inode = statSync(path).ino;
    expect(runConfigCommand(["set", "memoryBudgetBytes", "8GiB"], env, io)).toBe(0);
    // Replaced by rename (a new inode), never rewritten in place.
    expect(statSync(path).ino).not.toBe(inode);
    expect(runConfigCommand(["set", "apiKeys", "k1,k2"], env, io)).toBe(0);
    expect(runConfigCommand(["set", "modelAliases", "claude-*=*,gpt-*=*"], env, io)).toBe(0);
    expect(runConfigCommand(["set", "logPrompts", "true"], env, io)).toBe(0);
    expect(io.lines.join("\n")).not.toContain("k1"); // keys are not echoed
    // No temporary file left behind.
    expect(readdirSync(env.SEMANTIC_HOME)).toEqual(["config.json"]);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({
      port: 9000,
      memoryBudgetBytes: "8GiB",
      apiKeys: ["k1", "k2"],
      modelAliases: { "claude-*": "*", "gpt-*": "*" },
      logPrompts: true,
    });
    const c = loadConfig([], env);
    expect([c.port, c.memoryBudgetBytes, c.apiKeys, c.logPrompts]).toEqual([9000, 8 * 2 ** 30, ["k1", "k2"], true]);

    io.lines.length = 0;
    expect(runConfigCommand(["get", "memoryBudgetBytes"], env, io)).toBe(0);
    expect(runConfigCommand(["get", "port", "--port", "1234"], env, io)).toBe(0);
    expect(runConfigCommand(["get", "port"], { ...env, SEMANTIC_PORT: "4321" }, io)).toBe(0);
    expect(io.lines).toEqual([String(8 * 2 ** 30), "1234", "4321"]);

    expect(runConfigCommand(["unset", "port"], env, io)).toBe(0);
    expect(JSON.parse(readFileSync(path, "utf8")).port).toBeUndefined();
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test("an invalid value, an unknown key, a TOML file or a broken file are refused without touching the file", () => {
    const { dir, env } = fresh();
    const io = quiet();
    expect(runConfigCommand(["set", "port", "8081"], env, io)).toBe(0);
    const path = join(env.SEMANTIC_HOME, "config.json");
    chmodSync(path, 0o600);
    const before = readFileSync(path, "utf8");
    const { mtimeMs, ino } = statSync(path);

    expect(runConfigCommand(["set", "memoryBudgetBytes", "-5"], env, io)).toBe(2);
    expect(io.errors.pop()).toMatch(/memoryBudgetBytes \(command line\): expected a size of at least 16 MiB.*got "-5"/);
    expect(runConfigCommand(["set", "port", "http"], env, io)).toBe(2);
    expect(runConfigCommand(["set", "blockTokens", "100"], env, io)).toBe(2);
    expect(runConfigCommand(["set", "prot", "80"], env, io)).toBe(2);
    expect(io.errors.pop()).toContain("prot (command line): unknown setting");
    expect(runConfigCommand(["set", "port"], env, io)).toBe(2);
    expect(readFileSync(path, "utf8")).toBe(before);
    expect(statSync(path).mtimeMs).toBe(mtimeMs);
    expect(statSync(path).ino).toBe(ino);
    expect(readdirSync(env.SEMANTIC_HOME)).toEqual(["config.json"]);

    const toml = write(dir, "c.toml", "port = 1\n");
    expect(runConfigCommand(["set", "port", "2", "--config", toml], env, io)).toBe(2);
    expect(io.errors.pop()).toContain("writes JSON only");
    expect(readFileSync(toml, "utf8")).toBe("port = 1\n");

    const broken = write(dir, "broken.json", '{"port": ');
    expect(runConfigCommand(["set", "port", "2", "--config", broken], env, io)).toBe(2);
    expect(readFileSync(broken, "utf8")).toBe('{"port": ');
    const unknown = write(dir, "unknown.json", '{"colour": "red"}');
    expect(runConfigCommand(["set", "port", "2", "--config", unknown], env, io)).toBe(2);
    expect(io.errors.pop()).toContain("colour");
    expect(readFileSync(unknown, "utf8")).toBe('{"colour": "red"}');
  });

  test("set through the command line (bun run config set ...) and a warning when the whole is not valid yet", () => {
    const { env } = fresh();
    const { SEMANTIC_HOME: _h, SEMANTIC_CONFIG: _c, ...inherited } = process.env;
    const run = (args: string[]) => Bun.spawnSync([process.execPath, "scripts/config.ts", ...args], { cwd: repoRoot, env: { ...inherited, ...env } });
    const r = run(["set", "host", "0.0.0.0"]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr.toString()).toContain("not valid yet");
    expect(r.stderr.toString()).toContain("refusing to bind 0.0.0.0 without API keys");
    expect(run(["set", "apiKeys", "k1"]).exitCode).toBe(0);
    expect(run(["check"]).exitCode).toBe(0);
    const bad = run(["set", "port", "99999"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain("port (command line): expected an integer from 0 to 65535");
  });
});
