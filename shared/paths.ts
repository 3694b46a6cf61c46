// Where things live on disk. Only these functions decide paths; nothing builds one from user input.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { DEFAULT_MODEL } from "./pins.ts";

/** The checkout this code runs from. */
export const repoRoot = resolve(import.meta.dir, "..");

/** Git-ignored build products: the unpacked MLX wheel and the compiled C ABI. */
export const depsDir = join(repoRoot, ".deps");

const libExt = process.platform === "darwin" ? "dylib" : "so";

/** The project's C ABI over MLX, built by scripts/setup.ts. */
export const ffiLibraryPath = join(depsDir, "build", `libsemantic_mlx.${libExt}`);

/** Downloads and models: SEMANTIC_CACHE_DIR, else the platform's user cache folder. */
export function cacheDir(env = process.env): string {
  if (env.SEMANTIC_CACHE_DIR) return resolve(env.SEMANTIC_CACHE_DIR);
  if (process.platform === "darwin") return join(homedir(), "Library", "Caches", "semantic");
  return join(env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), ".cache"), "semantic");
}

/** The data folder (KV caches, config): SEMANTIC_HOME, else ~/.semantic. */
export function dataDir(env = process.env): string {
  return env.SEMANTIC_HOME ? resolve(env.SEMANTIC_HOME) : join(homedir(), ".semantic");
}

/** The embedded default model, as scripts/setup.ts leaves it. */
export function defaultModelPath(env = process.env): string {
  return join(cacheDir(env), "models", DEFAULT_MODEL.file);
}
