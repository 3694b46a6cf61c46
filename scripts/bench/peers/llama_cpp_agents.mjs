// llama.cpp (through node-llama-cpp) on the bench:agents workload: N agents x T turns, round-robin,
// one request at a time. One context with one sequence per agent, as llama-server keeps one slot per
// parallel client with cache_prompt on (its default): each turn keeps the common prefix of the
// sequence's KV and the prompt (adaptStateToTokens, without context shifting) and evaluates only
// the rest, then generates greedily up to the workload's token count or an end-of-generation token.
// Without HTTP. Runs under Node from .deps/peers/node-llama-cpp.
//
// usage: node llama_cpp_agents.mjs <node-llama-cpp prefix> <workload.json> <model.gguf>
// Prints one JSON object on stdout; progress on stderr.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, workloadPath, modelPath] = process.argv.slice(2);
const w = JSON.parse(readFileSync(workloadPath, "utf8"));
const pkgDir = join(resolve(prefix), "node_modules", "node-llama-cpp");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(pkgDir, pkg.exports?.["."]?.import ?? pkg.main)).href);

const t0 = performance.now();
const llama = await getLlama({ gpu: false, build: "never", maxThreads: w.threads, logLevel: LlamaLogLevel.error, progressLogs: false });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const n = w.agents.length;
// contextSize is per sequence in node-llama-cpp 3.x: room for the longest prompt plus a reply.
const context = await model.createContext({ contextSize: Math.ceil((w.maxTokens + w.decode + 64) / 256) * 256, batchSize: 512, threads: w.threads, sequences: n });
const loadMs = performance.now() - t0;
const sequences = Array.from({ length: n }, () => context.getSequence());
const eos = new Set(w.eos);

// Warm-up on a short prompt of its own, then an empty sequence again.
for await (const _ of sequences[0].evaluate(w.agents[0].first.slice(0, 32), { temperature: 0 })) break;
await sequences[0].clearHistory();

const prompts = w.agents.map((a) => [...a.first]);
const turns = [];
for (let t = 1; t <= w.turns; t++) {
  for (let i = 0; i < n; i++) {
    if (t > 1) prompts[i].push(...w.agents[i].next[t - 2]);
    const prompt = prompts[i];
    const seq = sequences[i];
    const start = performance.now();
    await seq.adaptStateToTokens(prompt, false);
    let cached = seq.nextTokenIndex;
    if (cached >= prompt.length) {
      // At least one token must be evaluated to get logits.
      await seq.eraseContextTokenRanges([{ start: prompt.length - 1, end: seq.nextTokenIndex }]);
      cached = seq.nextTokenIndex;
    }
    let ttft;
    const reply = [];
    let generated = 0;
    for await (const token of seq.evaluate(prompt.slice(cached), { temperature: 0, yieldEogToken: true })) {
      ttft ??= performance.now() - start;
      generated++;
      if (eos.has(token)) break;
      reply.push(token);
      if (generated === w.decode) break;
    }
    const total = performance.now() - start;
    turns.push({ agent: i, turn: t, ttftMs: ttft, totalMs: total, promptTokens: prompt.length, cachedTokens: cached, completionTokens: generated });
    process.stderr.write(`llama.cpp: agent ${i + 1} turn ${t}: ${prompt.length} prompt tokens (${cached} cached), TTFT ${ttft.toFixed(0)} ms\n`);
    prompts[i] = [...prompt, ...reply, ...w.close];
  }
}
console.log(JSON.stringify({
  turns,
  versions: { "node-llama-cpp": pkg.version, "llama.cpp": llama.llamaCppRelease.release, node: process.version, build: llama.buildType },
  weights: "GGUF Q4_1 as stored",
  loadMs,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
