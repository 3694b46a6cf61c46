// bun run bench:batch — continuous batching on the embedded model: 1, 2, 4, 8 and 16 concurrent
// streams, each its own ~32-token prompt and 64 greedy tokens, through the BatchEngine in process;
// aggregate decode tok/s while every stream decodes, and p50/p99 inter-token latency. Beside it in
// the same run, on the same prompt ids: mlx-lm's BatchGenerator (the continuous batching behind its
// server) and llama.cpp's parallel sequences (node-llama-cpp). Each engine runs in its own process.
//   BENCH_REPEATS        runs per level and engine (default 2; the best aggregate is reported)
//   BENCH_THREADS        threads for every engine (default: the machine's cores)
//   BENCH_PEERS          0 to measure ours only
//   BENCH_QUIET_WAIT     seconds to wait for other processes to quiet down before each engine (default 30)
//   BENCH_LEVELS, BENCH_DECODE  a smaller workload for a quick check (e.g. "1,2" and 8): printed, not written
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { BatchEngine } from "../../shared/engine/batch-engine.ts";
import { GREEDY } from "../../shared/engine/sampling/options.ts";
import * as mx from "../../shared/mlx/index.ts";
import { mlxVersion } from "../../shared/mlx/index.ts";
import { BatchKVCache } from "../../shared/models/batch-cache.ts";
import type { KVCache } from "../../shared/models/cache.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import type { Weights } from "../../shared/models/model.ts";
import { linear, type Weight } from "../../shared/models/nn.ts";
import { defaultModelPath, repoRoot } from "../../shared/paths.ts";
import { fmt, measureProcess, quantile } from "./harness.ts";
import { machineLine, writeSection } from "./markdown-section.ts";
import { ensurePeers, peersDir } from "./peers/setup.ts";

const LEVELS = process.env.BENCH_LEVELS ? process.env.BENCH_LEVELS.split(",").map(Number) : [1, 2, 4, 8, 16];
const PROMPT_TOKENS = 32;
const DECODE_TOKENS = Number(process.env.BENCH_DECODE ?? 64);
const quick = !!(process.env.BENCH_LEVELS || process.env.BENCH_DECODE);
const threads = Number(process.env.BENCH_THREADS ?? cpus().length);
const repeats = Number(process.env.BENCH_REPEATS ?? 2);
const quietWaitS = Number(process.env.BENCH_QUIET_WAIT ?? 30);
const withPeers = process.env.BENCH_PEERS !== "0";
const COMMAND = "bun run bench:batch";

type Workload = { prompts: number[][]; decode: number; levels: number[]; repeats: number; threads: number };
/** Per stream: token arrival times (ms after submission) and ids. */
type Run = { times: number[][]; tokens: number[][] };
/** Where one decode step's time goes at a batch size (ours only). */
type StepProfile = { rows: number; stepMs: number; linearsMs: number; lmHeadMs: number };
type Output = { levels: { n: number; runs: Run[] }[]; versions: Record<string, string>; weights: string; othersCpu?: number; profile?: StepProfile[] };

const log = (msg: string): void => {
  process.stderr.write(`bench:batch: ${msg}\n`);
};

// ---------------------------------------------------------------------------------------------
// Ours, in a child process: `bun scripts/bench/batch.ts --child <workload.json>`

async function child(workloadPath: string): Promise<void> {
  const w = JSON.parse(readFileSync(workloadPath, "utf8")) as Workload;
  const m = await loadModel(defaultModelPath());
  const engine = new BatchEngine(m, { maxBatch: Math.max(...w.levels), maxQueued: 64 });
  const runLevel = async (prompts: number[][], decode: number): Promise<Run> => {
    const t0 = performance.now();
    const streams = await Promise.all(prompts.map(async (promptIds) => {
      const times: number[] = [];
      const tokens: number[] = [];
      for await (const e of engine.submit({ tenant: "bench", promptIds, maxTokens: decode, sampling: GREEDY, stop: [] })) {
        if (e.type !== "token") continue;
        times.push(performance.now() - t0);
        tokens.push(e.id);
      }
      return { times, tokens };
    }));
    return { times: streams.map((s) => s.times), tokens: streams.map((s) => s.tokens) };
  };
  await runLevel(w.prompts.slice(0, 2), 8); // warm-up
  const levels = [];
  for (const n of w.levels) {
    const runs = [];
    for (let r = 0; r < w.repeats; r++) runs.push(await runLevel(w.prompts.slice(0, n), w.decode));
    levels.push({ n, runs });
  }
  const profile = [1, 8].map((rows) => profileStep(m, rows));
  m.model.free();
  console.log(JSON.stringify({ levels, versions: { bun: Bun.version, mlx: mlxVersion() }, weights: `${m.weightMode} float32 (from ${m.quantization})`, profile } satisfies Output));
}

/** One batched decode step at `rows` rows of ~64 tokens, beside its matmuls alone on the model's own weights. */
function profileStep(m: LoadedModel, rows: number): StepProfile {
  const median = (f: () => void) => {
    f();
    const ts: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      f();
      ts.push(performance.now() - t0);
    }
    return ts.sort((a, b) => a - b)[3];
  };
  const weights = (m.model as unknown as { weights: Weights }).weights;
  const linears = weights.names().filter((n) => /^model\.layers\.\d+\..*_proj\.weight$/.test(n)).map((n) => weights.weight(n.slice(0, -".weight".length)));
  const head = weights.has("lm_head") ? weights.weight("lm_head") : weights.weight("model.embed_tokens");
  const inDim = (w: Weight) => ("scales" in w ? (w.w.shape[1] * 32) / w.bits : w.shape[1]);
  const xs = new Map<number, mx.MxArray>();
  const x = (d: number) => xs.get(d) ?? xs.set(d, mx.keep(mx.uniform([rows, d], null))).get(d)!;
  const linearsMs = median(() => mx.tidy(() => mx.evaluate(...linears.map((w) => linear(x(inDim(w)), w)))));
  const lmHeadMs = median(() => mx.tidy(() => mx.evaluate(linear(x(inDim(head)), head))));
  const caches = m.model.cacheSpec.layers.map(() => new BatchKVCache());
  for (let r = 0; r < rows; r++) {
    const kv = m.model.makeCache();
    mx.tidy(() => void m.model.forward(mx.array(Int32Array.from({ length: 60 + r }, (_, i) => 100 + i), [1, 60 + r], mx.Dtype.int32), kv));
    caches.forEach((c, l) => {
      const [k, v] = (kv[l] as KVCache).state()!;
      c.add(k, v);
      mx.dispose([k, v]);
    });
    for (const c of kv) c.free();
  }
  const V = m.model.vocabSize;
  const stepMs = median(() => mx.tidy(() => mx.evaluate(mx.argmax(mx.reshape(m.model.forward(mx.array(new Int32Array(rows).fill(200), [rows, 1], mx.Dtype.int32), caches), [rows, V]), -1))));
  for (const c of caches) c.free();
  for (const a of xs.values()) a.free();
  return { rows, stepMs, linearsMs, lmHeadMs };
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

type Metrics = { aggregate: number; endToEnd: number; itlP50: number; itlP99: number; tokens: number; streams: number };

/**
 * Aggregate decode tok/s over the window in which every stream is decoding (from the last
 * stream's first token to the first stream's last), end-to-end tok/s (all tokens over the whole
 * run, prefill included), and inter-token gaps of every stream.
 */
function metricsOf(run: Run): Metrics {
  const streams = run.times.filter((t) => t.length > 0);
  const start = Math.max(...streams.map((t) => t[0]));
  const end = Math.min(...streams.map((t) => t.at(-1)!));
  const inWindow = streams.reduce((n, t) => n + t.filter((x) => x > start && x <= end).length, 0);
  const gaps = streams.flatMap((t) => t.slice(1).map((x, i) => x - t[i]));
  const tokens = streams.reduce((n, t) => n + t.length, 0);
  return {
    aggregate: end > start ? (inWindow / (end - start)) * 1000 : Number.NaN,
    endToEnd: (tokens / Math.max(...streams.map((t) => t.at(-1)!))) * 1000,
    itlP50: quantile(gaps, 0.5),
    itlP99: quantile(gaps, 0.99),
    tokens,
    streams: streams.length,
  };
}

/** The best of the repeated runs at each level (highest aggregate). */
function best(out: Output): Map<number, Metrics> {
  const byLevel = new Map<number, Metrics>();
  for (const l of out.levels) {
    const ms = l.runs.map(metricsOf);
    byLevel.set(l.n, ms.reduce((a, b) => (b.aggregate > a.aggregate || Number.isNaN(a.aggregate) ? b : a)));
  }
  return byLevel;
}

/** Runs one engine's process; its last stdout line is its JSON output. Notes the CPU others took meanwhile. */
async function measure(what: string, cmd: string[]): Promise<Output | string> {
  const r = await measureProcess<Output>(what, cmd, { log, quietWaitS, threads, timeoutMs: 20 * 60_000 });
  return r.ok ? r.value : r.reason;
}

/** 16 prompts of 32 ids: different openings of plain prose (no chat template, no BOS). */
async function buildWorkload(): Promise<Workload> {
  const { loadTokenizer } = await import("../../shared/tokenizer/load-tokenizer.ts");
  const tok = loadTokenizer(defaultModelPath());
  const openings = [
    "The history of the river valley is written in its stones.", "In the spring of that year the harbour town filled with ships.",
    "Every morning the baker on the corner lit his ovens before dawn.", "The old observatory stood on the hill above the university.",
    "When the railway reached the mountain villages, everything changed.", "The library kept its oldest maps in a room without windows.",
    "Far to the north, the forest gave way to open tundra.", "The orchestra tuned their instruments as the hall grew quiet.",
    "At the edge of the desert, a small market served the caravans.", "The engineers spent the winter designing a new kind of bridge.",
    "Long before the city was founded, fishermen camped on the island.", "The garden behind the museum was planted by a famous botanist.",
    "On the first day of school, the new teacher arrived early.", "The lighthouse keeper wrote a letter to his sister every week.",
    "Beneath the streets of the old quarter ran a network of tunnels.", "The expedition set out from the coast with twelve camels.",
  ];
  const filler = " It is a story of patient work, of seasons and of the people who lived there, told through the things they left behind.";
  const prompts = openings.map((o) => tok.encode(o + filler + filler).slice(0, PROMPT_TOKENS));
  return { prompts, decode: DECODE_TOKENS, levels: LEVELS, repeats, threads };
}

function peerCommands(workloadPath: string): { name: string; cmd: string[] | string }[] {
  if (!withPeers) return [];
  ensurePeers(defaultModelPath());
  const out: { name: string; cmd: string[] | string }[] = [];
  const venvs = ["mlx-lm-openblas-venv", "mlx-lm-venv"].map((v) => join(peersDir, v, "bin", "python")).filter(existsSync);
  const mlxModel = join(peersDir, "smollm2-mlx");
  out.push({
    name: "mlx-lm BatchGenerator (dense float32)",
    cmd: venvs.length && existsSync(join(mlxModel, "config.json"))
      ? [venvs[0], join(import.meta.dir, "peers", "mlx_lm_batch.py"), workloadPath, mlxModel, "--dense"]
      : "not set up (scripts/bench/peers/setup.ts makes .deps/peers/mlx-lm-venv and smollm2-mlx; bun run bench:model runs it)",
  });
  const node = Bun.which("node");
  const llamaPrefix = join(peersDir, "node-llama-cpp");
  out.push({
    name: "llama.cpp parallel sequences (node-llama-cpp, Q4_1)",
    cmd: node && existsSync(join(llamaPrefix, "node_modules", "node-llama-cpp"))
      ? [node, join(import.meta.dir, "peers", "llama_cpp_batch.mjs"), llamaPrefix, workloadPath, defaultModelPath()]
      : "not set up (scripts/bench/peers/setup.ts installs .deps/peers/node-llama-cpp)",
  });
  return out;
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = loadavg()[0];
  const workload = await buildWorkload();
  const dir = join(repoRoot, ".deps", "bench");
  mkdirSync(dir, { recursive: true });
  const workloadPath = join(dir, "batch-workload.json");
  writeFileSync(workloadPath, JSON.stringify(workload));

  const engines: { name: string; result: Output | string }[] = [];
  engines.push({ name: "semantic BatchEngine", result: await measure("ours", [process.execPath, import.meta.path, "--child", workloadPath]) });
  for (const p of peerCommands(workloadPath)) {
    engines.push({ name: p.name, result: typeof p.cmd === "string" ? p.cmd : await measure(p.name, p.cmd) });
  }

  const ok = engines.filter((e): e is { name: string; result: Output } => typeof e.result !== "string");
  const metrics = new Map(ok.map((e) => [e.name, best(e.result)]));
  const ours = metrics.get(engines[0].name);
  const lines: string[] = [];
  lines.push(`## Continuous batching (\`${COMMAND}\`)`, "");
  lines.push(
    `${machineLine()}, ${threads} threads. SmolLM2-135M-Instruct; ${LEVELS.join("/")} concurrent streams, each its own ${PROMPT_TOKENS}-token prompt ` +
    `and ${DECODE_TOKENS} greedy tokens, all submitted at once; best of ${repeats} runs per level. Aggregate = tokens per second while every ` +
    `stream is decoding (from the last stream's first token to the first stream's last); end-to-end = all tokens over the whole run, ` +
    `prefill included; ITL = gaps between a stream's consecutive tokens, over all streams. Load average ${fmt(loadBefore, 2)} before, ${fmt(loadavg()[0], 2)} after; ` +
    `run took ${fmt((performance.now() - started) / 1000, 0)} s.`,
    "",
  );
  lines.push("| engine | weights | streams | aggregate tok/s | vs 1 stream | end-to-end tok/s | ITL p50 ms | ITL p99 ms | CPU others took |");
  lines.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const e of ok) {
    const byLevel = metrics.get(e.name)!;
    const one = byLevel.get(1)?.aggregate ?? Number.NaN;
    for (const n of LEVELS) {
      const x = byLevel.get(n);
      if (!x) continue;
      lines.push(`| ${e.name} | ${e.result.weights} | ${n} | ${fmt(x.aggregate)} | ${fmt(x.aggregate / one, 2)}x | ${fmt(x.endToEnd)} | ${fmt(x.itlP50, 0)} | ${fmt(x.itlP99, 0)} | ${e.result.othersCpu === undefined ? "—" : `${fmt(e.result.othersCpu * 100, 0)}%`} |`);
    }
  }
  if (ours && ok.length > 1) {
    lines.push("", "Ours relative to each peer (aggregate tok/s ratio, above 1 = ours faster):", "");
    lines.push(`| peer | ${LEVELS.map((n) => `${n}`).join(" | ")} |`, `| --- | ${LEVELS.map(() => "---").join(" | ")} |`);
    for (const e of ok.slice(1)) {
      const p = metrics.get(e.name)!;
      lines.push(`| ${e.name} | ${LEVELS.map((n) => fmt((ours.get(n)?.aggregate ?? Number.NaN) / (p.get(n)?.aggregate ?? Number.NaN), 2)).join(" | ")} |`);
    }
  }
  if (ours) {
    const at8 = ours.get(8)?.aggregate ?? Number.NaN;
    const verdict = [`ours ${fmt(at8 / (ours.get(1)?.aggregate ?? Number.NaN), 2)}x single-stream (target 3x)`];
    for (const e of ok.slice(1)) verdict.push(`${fmt(at8 / (metrics.get(e.name)!.get(8)?.aggregate ?? Number.NaN), 2)}x ${e.name.split(" ")[0]}`);
    lines.push("", `At 8 streams: ${verdict.join("; ")}.`);
  }
  const profile = ok[0]?.result.profile;
  if (profile?.length) {
    lines.push("", "Where one of our batched decode steps goes (same run; the matmuls timed alone on the model's own weights):", "");
    lines.push("| rows | step ms | 210 layer matmuls ms | lm_head ms | everything else ms (attention, norms, RoPE, op dispatch) |", "| --- | --- | --- | --- | --- |");
    for (const p of profile) lines.push(`| ${p.rows} | ${fmt(p.stepMs)} | ${fmt(p.linearsMs)} | ${fmt(p.lmHeadMs)} | ${fmt(p.stepMs - p.linearsMs - p.lmHeadMs)} |`);
  }
  for (const e of engines.filter((x) => typeof x.result === "string")) lines.push("", `${e.name}: not measured — ${e.result}.`);
  lines.push("", `Versions: ${ok.map((e) => `${e.name.split(" ")[0]} ${Object.entries(e.result.versions).map(([k, v]) => `${k} ${v}`).join(", ")}`).join("; ")}.`);
  lines.push("", "Targets (issue 6): aggregate at 8 streams at least 3x single-stream, and ahead of both peers at 8 streams.");
  const body = lines.join("\n");
  if (!quick) writeSection("batch", body);
  console.log(body);
}

if (process.argv[2] === "--child") await child(process.argv[3]);
else await main();
