// Structured logs: one JSON object per line on stderr ({"time","level","msg",...fields}), so a
// log shipper or `jq` reads them as they are. stdout is left to the one "semantic ready on URL"
// line that tools wait for. Identities are hashed and prompt text stays out unless logPrompts.
//
//   log.configure({ level: "info", prompts: false });
//   log.info("request", { requestId, function: "/v1/messages", status: 200, durationMs: 812 });
//   log.error("stream failed", { requestId, error: errorFields(e) });

export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogOptions = {
  /** Least severe level written (config key logLevel). */
  level?: LogLevel;
  /** Prompt and completion text may be logged (config key logPrompts); off by default. */
  prompts?: boolean;
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
};

export class Logger {
  #level: LogLevel = "info";
  #prompts = false;
  #write: (line: string) => void = (line) => process.stderr.write(line);

  configure(o: LogOptions): void {
    if (o.level) this.#level = o.level;
    if (o.prompts !== undefined) this.#prompts = o.prompts;
    if (o.write) this.#write = o.write;
  }

  /** Whether prompt and completion text may appear in log lines. */
  get prompts(): boolean {
    return this.#prompts;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.#level];
  }

  log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return;
    // time, level and msg first, so a line reads well in a terminal too.
    this.#write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log("debug", msg, fields);
  }

  info(msg: string, fields?: Record<string, unknown>): void {
    this.log("info", msg, fields);
  }

  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log("warn", msg, fields);
  }

  error(msg: string, fields?: Record<string, unknown>): void {
    this.log("error", msg, fields);
  }
}

/** The process's logger; shared/main.ts configures it from the settings. */
export const log = new Logger();

/**
 * A stable, non-reversible label for an identity (tenant, agent id): the first 12 hex digits of
 * its SHA-256. Lines from one tenant can be grouped without the log holding its API key identity.
 * @example hashId("key-a") // "1d5b9c0e7f3a"
 */
export function hashId(id: string): string {
  return new Bun.CryptoHasher("sha256").update(id).digest("hex").slice(0, 12);
}

/** An error as log fields: its name, message and stack. */
export function errorFields(e: unknown): { name: string; message: string; stack?: string } {
  if (e instanceof Error) return { name: e.name, message: e.message, ...(e.stack ? { stack: e.stack } : {}) };
  return { name: typeof e, message: String(e) };
}
