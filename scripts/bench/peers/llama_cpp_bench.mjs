// llama.cpp (through node-llama-cpp) on the bench:model workload: the same GGUF on the CPU,
// prefill the same prompt ids, then greedy decode a fixed number of tokens (EOS fed back, not
// a stop). Runs under Node from .deps/peers/node-llama-cpp; prints one JSON object on stdout.
//
// usage: node llama_cpp_bench.mjs <node-llama-cpp prefix> <workload.json> <model.gguf> [repeats]
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, workloadPath, modelPath, repeatsArg] = process.argv.slice(2);
const { ids, decode, threads } = JSON.parse(readFileSync(workloadPath, "utf8"));
const repeats = Number(repeatsArg ?? 3);
const pkgDir = join(resolve(prefix), "node_modules", "node-llama-cpp");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(pkgDir, pkg.exports?.["."]?.import ?? pkg.main)).href);

// Prebuilt CPU binaries only: never build from source (no GitHub here), never download.
const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.error, progressLogs: false });
const t0 = performance.now();
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 1024, batchSize: ids.length, threads, sequences: 1 });
const loadMs = performance.now() - t0;
const sequence = context.getSequence();

/** Seconds to the first token (prefill), seconds for `n` more tokens, and the tokens. */
async function runOnce(prompt, n) {
  await sequence.clearHistory();
  const out = [];
  const start = performance.now();
  let first = start;
  for await (const token of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
    out.push(token);
    if (out.length === 1) first = performance.now();
    if (out.length === n + 1) break;
  }
  const end = performance.now();
  if (out.length !== n + 1) throw new Error(`generated ${out.length} tokens, wanted ${n + 1}`);
  return { prefill: (first - start) / 1000, decode: (end - first) / 1000, tokens: out };
}

await runOnce(repeats > 1 ? ids : ids.slice(0, 32), 4); // warm-up: allocations, thread pool
const prefill = [];
const decodeRuns = [];
let tokens = [];
for (let i = 0; i < repeats; i++) {
  const r = await runOnce(ids, decode);
  prefill.push(r.prefill);
  decodeRuns.push(r.decode);
  tokens = r.tokens;
}
console.log(JSON.stringify({
  loadMs,
  prefillTps: ids.length / Math.min(...prefill),
  decodeTps: decode / Math.min(...decodeRuns),
  prefillRuns: prefill,
  decodeRuns,
  peakRssBytes: process.resourceUsage().maxRSS * 1024,
  tokens,
  versions: { "node-llama-cpp": pkg.version, "llama.cpp": llama.llamaCppRelease.release, node: process.version, build: llama.buildType, gpu: String(llama.gpu) },
  threads,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
