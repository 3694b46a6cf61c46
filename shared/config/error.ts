// A configuration that cannot be used: every problem found, each naming the key, where the value
// came from (flag, environment variable, config file) and what a valid value looks like.

export type ConfigIssue = {
  /** The setting, or null for a problem with the source itself (an unreadable file, an unknown flag). */
  key: string | null;
  /** "flag --port", "env SEMANTIC_PORT", "file /path/config.toml", "command line", ... */
  source: string;
  message: string;
};

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly issues: ConfigIssue[]) {
    super(
      issues.length === 1
        ? `invalid configuration: ${line(issues[0])}`
        : `invalid configuration (${issues.length} problems):\n${issues.map((i) => `  ${line(i)}`).join("\n")}`,
    );
  }
}

function line(i: ConfigIssue): string {
  return i.key === null ? `${i.source}: ${i.message}` : `${i.key} (${i.source}): ${i.message}`;
}
