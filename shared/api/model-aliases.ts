// Which requested model ids the served model answers to. SEMANTIC_MODEL_ALIASES is a comma list
// of `pattern=target` with `*` globs; the target is the served id or `*` (the served model).
// The default, "claude-*=*", lets Claude Code send any claude-* id.
import { ApiError } from "./errors.ts";

export const DEFAULT_ALIASES = "claude-*=*";

export class ModelAliasError extends Error {
  override name = "ModelAliasError";
}

export class ModelResolver {
  readonly #patterns: RegExp[];

  constructor(readonly servedId: string, spec: string = DEFAULT_ALIASES) {
    this.#patterns = spec.split(",").map((s) => s.trim()).filter(Boolean).map((entry) => {
      const eq = entry.lastIndexOf("=");
      const pattern = eq >= 0 ? entry.slice(0, eq).trim() : entry;
      const target = eq >= 0 ? entry.slice(eq + 1).trim() : "*";
      if (!pattern) throw new ModelAliasError(`SEMANTIC_MODEL_ALIASES: empty pattern in ${JSON.stringify(entry)}`);
      if (target !== "*" && target !== servedId) {
        throw new ModelAliasError(`SEMANTIC_MODEL_ALIASES: ${JSON.stringify(entry)} targets ${JSON.stringify(target)}, but the served model is ${JSON.stringify(servedId)}`);
      }
      const re = pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
      return new RegExp(`^${re}$`);
    });
  }

  /** Whether `id` names the served model, directly or by alias. */
  matches(id: string): boolean {
    return id === this.servedId || this.#patterns.some((p) => p.test(id));
  }

  /** Throws a 404 naming the served model when `id` is not it. */
  resolve(id: string): string {
    if (!this.matches(id)) {
      throw new ApiError("not_found", `model: ${JSON.stringify(id)} is not served here; this server serves ${JSON.stringify(this.servedId)}`, {
        param: "model",
        code: "model_not_found",
      });
    }
    return this.servedId;
  }
}
