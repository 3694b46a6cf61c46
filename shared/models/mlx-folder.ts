// An MLX-format model folder as mlx-community publishes them: config.json, model*.safetensors
// (affine-quantized weights as weight/scales/biases with `quantization` in the config),
// tokenizer files. Every safetensors header is validated before MLX loads the file.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadSafetensors, type MxArray } from "../mlx/index.ts";
import { ModelLoadError } from "./model.ts";
import { readSafetensorsHeader, SafetensorsError } from "./safetensors-header.ts";

export type MlxFolderFiles = { config: Record<string, unknown>; arrays: Map<string, MxArray>; files: string[] };

function readConfig(dir: string): Record<string, unknown> {
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new ModelLoadError(`${dir}: no config.json`);
  try {
    const c = JSON.parse(readFileSync(path, "utf8"));
    if (!c || typeof c !== "object" || Array.isArray(c)) throw new Error("not a JSON object");
    return c;
  } catch (e) {
    throw new ModelLoadError(`${path}: ${(e as Error).message}`);
  }
}

/** The weight files: those named by model.safetensors.index.json, else every *.safetensors. */
export function weightFiles(dir: string): string[] {
  const index = join(dir, "model.safetensors.index.json");
  let names: string[];
  if (existsSync(index)) {
    const map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
    names = [...new Set(Object.values(map))];
    // Names come from a file in the folder: keep them inside it.
    for (const n of names) if (n.includes("/") || n.includes("\\") || n.startsWith(".")) throw new ModelLoadError(`${index}: bad file name "${n}"`);
  } else {
    names = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
  }
  if (!names.length) throw new ModelLoadError(`${dir}: no *.safetensors weight files`);
  return names.map((n) => join(dir, n));
}

export function loadMlxFolder(dir: string): MlxFolderFiles {
  const config = readConfig(dir);
  const files = weightFiles(dir);
  const arrays = new Map<string, MxArray>();
  try {
    for (const f of files) {
      try {
        readSafetensorsHeader(f);
      } catch (e) {
        if (e instanceof SafetensorsError) throw new ModelLoadError(`${f}: ${e.reason}`);
        throw e;
      }
      for (const [k, v] of loadSafetensors(f).arrays) arrays.set(k, v);
    }
  } catch (e) {
    for (const a of arrays.values()) a.free();
    throw e;
  }
  return { config, arrays, files };
}
