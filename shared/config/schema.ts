// Every setting of the server in one TypeBox schema: type, bounds, default and description per
// key, plus the flag and environment names it is read from. Help, parsing and validation are
// all generated from this schema; nothing lists the keys a second time.
import { Kind, type Static, type TSchema, Type } from "@sinclair/typebox";
import { totalmem } from "node:os";
import { join } from "node:path";
import { dataDir, defaultModelPath } from "../paths.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Annotations this project adds to a key's schema (TypeBox keeps unknown keywords). */
type Extra = {
  /** Environment variable; default SEMANTIC_<UPPER_SNAKE of the key without a "Bytes" suffix>. */
  env?: string;
  /** Long flag without dashes; default the kebab-case key without a "Bytes" suffix. */
  flag?: string;
  /** "bytes": a size, given as a number or a string like "8GiB"; "ms": milliseconds. */
  unit?: "bytes" | "ms";
  /** Never echoed in errors or `config show`. */
  secret?: boolean;
  /** "path": "~/" is expanded and a relative path is made absolute (against the config file's folder when it comes from the file). */
  path?: boolean;
  /** What a valid value looks like, when the bounds alone do not say it. */
  expected?: string;
};

const powersOfTwo = (from: number, to: number) => {
  const out: number[] = [];
  for (let v = from; v <= to; v *= 2) out.push(v);
  return out;
};

/**
 * The schema with the defaults that depend on the machine and environment (model path, data
 * folder, total memory) computed for `env`. `Config` below is it for process.env.
 */
export function configSchema(env: Record<string, string | undefined> = process.env) {
  const home = dataDir(env);
  return Type.Object(
    {
      model: Type.String({
        minLength: 1,
        default: defaultModelPath(env),
        description: "The model to serve: a GGUF file, an MLX model folder (config.json + safetensors) or a hub id. Default: the embedded SmolLM2-135M-Instruct (Q4_1) that `bun run setup` fetches.",
        expected: "a GGUF path, an MLX folder or a hub id",
        path: true,
      }),
      host: Type.String({
        minLength: 1,
        pattern: "^[^\\s/@?#]+$",
        default: "127.0.0.1",
        description: "Address to listen on. Anything but loopback (127.0.0.1, ::1, localhost) requires apiKeys.",
        expected: "a host name or IP address",
      }),
      port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: "TCP port to listen on; 0 picks a free port." }),
      apiKeys: Type.Array(Type.String({ minLength: 1, pattern: "^[^\\s,]+$" }), {
        default: [],
        description: "API keys clients must send (x-api-key or Authorization: Bearer); each key is a tenant with its own caches. None: no authentication (loopback only). Prefer the environment or the file (mode 0600) to a flag, which other users can see in `ps`.",
        expected: "a list of keys without spaces or commas",
        secret: true,
      }),
      allowedHosts: Type.Array(Type.String({ minLength: 1, pattern: "^[^\\s,]+$" }), {
        default: [],
        description: "Extra Host header names accepted besides loopback names (DNS-rebinding guard).",
        expected: "a list of host names",
      }),
      allowedOrigins: Type.Array(Type.String({ minLength: 1, pattern: "^[^\\s,]+$" }), {
        default: [],
        description: "Browser origins allowed to call the API besides loopback ones (e.g. https://app.example).",
        expected: "a list of origins",
      }),
      modelAliases: Type.Record(Type.String({ pattern: "^[^\\s,=]+$" }), Type.String({ minLength: 1, pattern: "^[^\\s,=]+$" }), {
        additionalProperties: false,
        default: { "claude-*": "*" },
        description: "Requested model ids the served model answers to: pattern (with * globs) -> target (the served id, or * for the served model). In the environment and flags: comma-separated pattern=target pairs.",
        expected: 'pattern=target pairs, e.g. "claude-*=*" (a table/object in the file)',
      }),
      weights: Type.Union([Type.Literal("auto"), Type.Literal("quantized"), Type.Literal("dense")], {
        default: "auto",
        description: "Weights as loaded: auto keeps what the model file stores; quantized quantizes dense weights on load; dense dequantizes quantized ones.",
      }),
      cacheDir: Type.String({
        minLength: 1,
        default: join(home, "cache"),
        description: "Folder of the persisted KV cache blocks (warm tier). Not SEMANTIC_CACHE_DIR, which holds downloads and models.",
        expected: "a folder path",
        env: "SEMANTIC_KV_CACHE_DIR", flag: "kv-cache-dir", path: true,
      }),
      blockTokens: Type.Union(
        powersOfTwo(16, 4096).map((n) => Type.Literal(n)),
        { default: 256, description: "Tokens per KV cache block: the unit of prefix sharing and of cache files. Changing it starts new cache files." },
      ),
      memoryBudgetBytes: Type.Integer({
        minimum: 16 * MiB,
        maximum: Number.MAX_SAFE_INTEGER,
        default: Math.floor(totalmem() / 4 / MiB) * MiB,
        description: "Bytes of KV cache kept in memory (hot tier, least recently used evicted first). Default: 25% of this machine's memory.",
        unit: "bytes",
      }),
      diskBudgetBytes: Type.Integer({
        minimum: 0,
        maximum: Number.MAX_SAFE_INTEGER,
        default: 20 * GiB,
        description: "Bytes of KV cache files kept on disk (warm tier, least recently used deleted first).",
        unit: "bytes",
      }),
      maxBatch: Type.Integer({ minimum: 1, maximum: 256, default: 8, description: "Sequences generated at once (continuous batching)." }),
      maxQueued: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 64, description: "Requests waiting for a batch slot; beyond it requests are refused (429/503)." }),
      maxQueuedTokens: Type.Integer({ minimum: 1, maximum: 1 << 30, default: 262144, description: "Prompt tokens waiting in the queue; beyond it requests are refused." }),
      prefillChunk: Type.Integer({ minimum: 16, maximum: 65536, default: 512, description: "Prompt tokens per prefill step, interleaved with decoding of running sequences." }),
      agentWaitMs: Type.Integer({
        minimum: 0,
        maximum: 3_600_000,
        default: 30_000,
        description: "How long a request waits for the previous turn of the same agent to finish before it is refused (409).",
        unit: "ms",
      }),
      shutdownGraceMs: Type.Integer({
        minimum: 0,
        maximum: 600_000,
        default: 30_000,
        description: "On SIGTERM/SIGINT: how long in-flight requests may run before they are cancelled and the cache is flushed.",
        unit: "ms",
      }),
      logLevel: Type.Union([Type.Literal("debug"), Type.Literal("info"), Type.Literal("warn"), Type.Literal("error")], {
        default: "info",
        description: "Least severe log lines written.",
      }),
      logPrompts: Type.Boolean({ default: false, description: "Include prompt and completion text in logs (off: logs carry counts and timings only)." }),
      bodyLimitBytes: Type.Integer({
        minimum: KiB,
        maximum: GiB,
        default: 8 * MiB,
        description: "Largest request body accepted; larger ones get 413 in the API's error shape.",
        unit: "bytes", env: "SEMANTIC_MAX_BODY_BYTES", flag: "body-limit",
      }),
    },
    { additionalProperties: false },
  );
}

/** The settings schema (defaults computed for process.env at import). */
export const Config = configSchema();
export type Config = Static<typeof Config>;
export type ConfigKey = keyof Config & string;

export type KeyKind = "string" | "integer" | "size" | "boolean" | "enum" | "list" | "map";

/** One key, as the parsers, the help and the errors see it. */
export type KeyInfo = {
  key: ConfigKey;
  schema: TSchema;
  kind: KeyKind;
  flag: string;
  env: string;
  description: string;
  default: unknown;
  /** Allowed values of an enum key. */
  values?: (string | number)[];
  unit?: "bytes" | "ms";
  secret: boolean;
  path: boolean;
  expected?: string;
};

const snake = (key: string) => key.replace(/Bytes$/, "").replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
const kebab = (key: string) => key.replace(/Bytes$/, "").replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function kindOf(s: TSchema & Extra): KeyKind {
  if (s.unit === "bytes") return "size";
  switch (s[Kind]) {
    case "Integer":
      return "integer";
    case "String":
      return "string";
    case "Boolean":
      return "boolean";
    case "Array":
      return "list";
    case "Record":
      return "map";
    case "Union":
      if ((s.anyOf as TSchema[]).every((m) => m[Kind] === "Literal")) return "enum";
  }
  throw new Error(`config schema: no parser for ${String(s[Kind])}`);
}

/** Every key of `schema`, in schema order. */
export function keyInfos(schema: TSchema = Config): KeyInfo[] {
  return Object.entries(schema.properties as Record<string, TSchema & Extra>).map(([key, s]) => {
    const kind = kindOf(s);
    return {
      key: key as ConfigKey,
      schema: s,
      kind,
      flag: s.flag ?? kebab(key),
      env: s.env ?? `SEMANTIC_${snake(key)}`,
      description: s.description ?? "",
      default: s.default,
      values: kind === "enum" ? (s.anyOf as TSchema[]).map((m) => m.const as string | number) : undefined,
      unit: s.unit,
      secret: s.secret === true,
      path: s.path === true,
      expected: s.expected,
    };
  });
}

// ---- sizes ----

const UNITS: Record<string, number> = {
  "": 1, b: 1,
  k: KiB, kib: KiB, kb: 1e3,
  m: MiB, mib: MiB, mb: 1e6,
  g: GiB, gib: GiB, gb: 1e9,
  t: 1024 * GiB, tib: 1024 * GiB, tb: 1e12,
};

/**
 * "8GiB" -> 8589934592, "512MB" -> 512000000, "1.5G" -> 1610612736, "4096" -> 4096. KiB/MiB/GiB
 * (and bare K/M/G) are powers of 1024, KB/MB/GB powers of 1000. Not a size: null.
 */
export function parseSize(text: string): number | null {
  const m = text.trim().match(/^(-?\d+(?:\.\d+)?)\s*([a-z]*)$/i);
  if (!m) return null;
  const unit = UNITS[m[2].toLowerCase()];
  if (unit === undefined) return null;
  return Math.round(Number(m[1]) * unit);
}

/** 8589934592 -> "8 GiB"; sizes that are not a whole number of a unit stay in bytes. */
export function formatSize(bytes: number): string {
  for (const [name, unit] of [["TiB", 1024 * GiB], ["GiB", GiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit} ${name}`;
  }
  return `${bytes} bytes`;
}

// ---- what a valid value looks like ----

function bound(info: KeyInfo, n: number): string {
  return info.kind === "size" ? formatSize(n) : String(n);
}

/** "an integer from 0 to 65535", "one of auto, quantized, dense", ... for error messages and help. */
export function expectedOf(info: KeyInfo): string {
  const s = info.schema as TSchema & { minimum?: number; maximum?: number };
  const range = () => {
    const lo = s.minimum;
    const hi = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? s.maximum : undefined;
    if (lo !== undefined && hi !== undefined) return ` from ${bound(info, lo)} to ${bound(info, hi)}`;
    if (lo !== undefined) return ` of at least ${bound(info, lo)}`;
    return "";
  };
  switch (info.kind) {
    case "integer":
      return `an integer${range()}${info.unit === "ms" ? " (milliseconds)" : ""}`;
    case "size":
      return `a size${range()}: a number of bytes, or a string like "8GiB" or "512MB"`;
    case "boolean":
      return "true or false";
    case "enum":
      return `one of ${info.values!.join(", ")}`;
    default:
      return info.expected ?? "a non-empty string";
  }
}
