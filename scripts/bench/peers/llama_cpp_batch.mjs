// llama.cpp (through node-llama-cpp) on the bench:batch workload: one context with N parallel
// sequences (llama.cpp's slots; node-llama-cpp batches their pending tokens into one decode),
// greedy, the same prompt ids, a fixed number of tokens each (EOS does not stop them); the
// arrival time of every token. Runs under Node from .deps/peers/node-llama-cpp.
//
// usage: node llama_cpp_batch.mjs <node-llama-cpp prefix> <workload.json> <model.gguf>
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, workloadPath, modelPath] = process.argv.slice(2);
const { prompts, decode, levels, repeats, threads } = JSON.parse(readFileSync(workloadPath, "utf8"));
const pkgDir = join(resolve(prefix), "node_modules", "node-llama-cpp");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(pkgDir, pkg.exports?.["."]?.import ?? pkg.main)).href);

const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.error, progressLogs: false });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });

async function runLevel(sequences, n, tokensEach) {
  await Promise.all(sequences.map((s) => s.clearHistory()));
  const t0 = performance.now();
  const out = await Promise.all(sequences.slice(0, n).map(async (seq, i) => {
    const times = [];
    const tokens = [];
    for await (const token of seq.evaluate(prompts[i], { temperature: 0, yieldEogToken: true })) {
      times.push(performance.now() - t0);
      tokens.push(token);
      if (tokens.length === tokensEach) break;
    }
    return { times, tokens };
  }));
  return { times: out.map((o) => o.times), tokens: out.map((o) => o.tokens) };
}

const result = [];
for (const n of levels) {
  const context = await model.createContext({ contextSize: n * 256, batchSize: 512, threads, sequences: n });
  const sequences = Array.from({ length: n }, () => context.getSequence());
  await runLevel(sequences, Math.min(n, 2), 4); // warm-up
  const runs = [];
  for (let r = 0; r < repeats; r++) runs.push(await runLevel(sequences, n, decode));
  result.push({ n, runs });
  await context.dispose();
}
console.log(JSON.stringify({
  levels: result,
  versions: { "node-llama-cpp": pkg.version, "llama.cpp": llama.llamaCppRelease.release, node: process.version, build: llama.buildType },
  weights: "GGUF Q4_1 as stored",
}));
await model.dispose();
await llama.dispose();
