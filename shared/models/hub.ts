// Hugging Face repo ids: the MLX folder's files downloaded into the cache with a progress bar
// and resume (HTTP Range on a .part file). Needs network to huggingface.co, which CI lacks:
// this path is kept small and is not exercised by the tests.
import { appendFileSync, existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import { cacheDir } from "../paths.ts";
import { ModelLoadError } from "./model.ts";

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const WANTED = /^(config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|chat_template\.jinja|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json)$/;

export function isHubId(s: string): boolean {
  return REPO_ID.test(s) && !s.includes("..");
}

/** Downloads the files an MLX folder needs; returns the local folder. Already-complete files are kept. */
export async function downloadFromHub(id: string, root = cacheDir()): Promise<string> {
  if (!isHubId(id)) throw new ModelLoadError(`"${id}" is not a Hugging Face repo id`);
  const dir = join(root, "hub", id.replace("/", "--"));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const base = process.env.HF_ENDPOINT ?? "https://huggingface.co";
  const info = await fetch(`${base}/api/models/${id}`);
  if (!info.ok) throw new ModelLoadError(`${id}: hub answered ${info.status}`);
  const siblings = ((await info.json()) as { siblings?: { rfilename: string }[] }).siblings ?? [];
  const names = siblings.map((s) => s.rfilename).filter((n) => WANTED.test(n));
  if (!names.includes("config.json")) throw new ModelLoadError(`${id}: not an MLX/Transformers model folder (no config.json)`);
  for (const name of names) await downloadFile(`${base}/${id}/resolve/main/${name}`, join(dir, name), `${id}/${name}`);
  return dir;
}

async function downloadFile(url: string, dest: string, label: string): Promise<void> {
  if (existsSync(dest)) return;
  const part = `${dest}.part`;
  const have = existsSync(part) ? statSync(part).size : 0;
  const res = await fetch(url, { headers: have ? { Range: `bytes=${have}-` } : {} });
  if (!res.ok && res.status !== 206) throw new ModelLoadError(`${label}: download failed with ${res.status}`);
  const resumed = res.status === 206;
  const total = Number(res.headers.get("content-length") ?? 0) + (resumed ? have : 0);
  let done = resumed ? have : 0;
  if (!resumed && have) appendFileSync(part, new Uint8Array(0), { flag: "w" });
  for await (const chunk of res.body!) {
    appendFileSync(part, chunk);
    done += chunk.length;
    if (total) process.stderr.write(`\r${label} ${((done / total) * 100).toFixed(1)}% of ${(total / 2 ** 20).toFixed(1)} MiB`);
  }
  process.stderr.write("\n");
  renameSync(part, dest);
}
