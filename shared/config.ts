// The server's settings: one TypeBox schema (shared/config/schema.ts), read from flags, then
// the environment, then the config file (JSON or TOML), then defaults (shared/config/load.ts).
//
//   const config = configOrExit();          // --help: prints the help, exit 0; invalid: message, exit 2
//   app.listen({ hostname: config.host, port: config.port });
import { ConfigError } from "./config/error.ts";
import type { Env } from "./config/file.ts";
import { configHelp } from "./config/help.ts";
import { loadConfig, wantsHelp } from "./config/load.ts";
import type { Config } from "./config/schema.ts";

export { ConfigError, type ConfigIssue } from "./config/error.ts";
export { type FileLocation, formatOf, locateConfigFile, readConfigFile, writeFileAtomic } from "./config/file.ts";
export { configHelp } from "./config/help.ts";
export { checkFileData, isLoopbackHost, loadConfig, type Resolved, resolveConfig, type Source, valueFromFile, valueFromText, wantsHelp } from "./config/load.ts";
export { Config, type ConfigKey, configSchema, formatSize, type KeyInfo, keyInfos, parseSize } from "./config/schema.ts";

type Exit = (code: number) => never;

/**
 * For an entry point: the settings from the command line and environment. `--help`/`-h` prints
 * configHelp() and exits 0; a ConfigError prints its message to stderr and exits 2.
 */
export function configOrExit(argv: readonly string[] = process.argv.slice(2), env: Env = process.env, exit: Exit = process.exit): Config {
  if (wantsHelp(argv)) {
    console.log(configHelp(env));
    return exit(0);
  }
  try {
    return loadConfig(argv, env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(e.message);
    return exit(2);
  }
}

/** modelAliases as the comma list ModelResolver and createApp take: { "claude-*": "*" } -> "claude-*=*". */
export function modelAliasSpec(aliases: Config["modelAliases"]): string {
  return Object.entries(aliases).map(([pattern, target]) => `${pattern}=${target}`).join(",");
}
