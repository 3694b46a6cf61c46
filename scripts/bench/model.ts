// bun run bench:model — the embedded default model (SmolLM2-135M-Instruct Q4_1) on one fixed
// workload: prefill tok/s on a 512-token prompt, decode tok/s over 128 greedy tokens (EOS does not
// stop it), load time and peak memory; ours with dense and with quantized weights, and beside
// them in the same run mlx-lm (same MLX) and llama.cpp (node-llama-cpp) on the same prompt ids.
// Then a profile of one decode step: where the time goes and what bounds it.
//
// Each measurement runs in its own process (peak RSS is per process). Peers are set up by
// scripts/bench/peers/setup.ts (cached); a peer that cannot be set up or run is reported, not fatal.
//   BENCH_REPEATS   measured runs per fast engine (default 3); slow ones (quantized on the CPU) run once
//   BENCH_THREADS   threads for every engine (default: the machine's cores)
//   BENCH_PEER_TIMEOUT  seconds before one engine's run is abandoned (default 300)
//   BENCH_QUIET_WAIT    seconds to wait for other processes to quiet down before each engine (default 30)
//   BENCH_BUDGET        seconds after which the optional last run (mlx-lm on the wheel's BLAS) is skipped (default 660)
// `bun scripts/bench/model.ts --render` rewrites the section from the last run's saved results.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { prefill } from "../../shared/engine/generate.ts";
import * as mx from "../../shared/mlx/index.ts";
import { loadModel, type LoadedModel } from "../../shared/models/load.ts";
import type { Weights } from "../../shared/models/model.ts";
import type { LayerCache } from "../../shared/models/cache.ts";
import { CPU_KERNEL_MAX_ROWS, embed, linear, type Weight } from "../../shared/models/nn.ts";
import { defaultModelPath, repoRoot } from "../../shared/paths.ts";
import { fmt, measureProcess } from "./harness.ts";
import { machineLine, writeSection } from "./markdown-section.ts";
import { ensureConvertedModel, ensureMlxLm, ensureNodeLlamaCpp, type Peer, peersDir } from "./peers/setup.ts";

// The workload. The overrides are for smoke tests of this script (with BENCH_DRY=1: print, do not write BENCHMARKS.md).
const PROMPT_TOKENS = Number(process.env.BENCH_PROMPT_TOKENS ?? 512);
const DECODE_TOKENS = Number(process.env.BENCH_DECODE_TOKENS ?? 128);
const threads = Number(process.env.BENCH_THREADS ?? cpus().length);
const repeats = Number(process.env.BENCH_REPEATS ?? 3);
const peerTimeoutMs = Number(process.env.BENCH_PEER_TIMEOUT ?? 300) * 1000;
const quietWaitS = Number(process.env.BENCH_QUIET_WAIT ?? 30);
const budgetS = Number(process.env.BENCH_BUDGET ?? 660);
const modelPath = defaultModelPath();

type Workload = { ids: number[]; decode: number; threads: number };

/** What every engine reports, in the same units. */
type Result = {
  loadMs: number;
  prefillTps: number;
  decodeTps: number;
  prefillRuns: number[];
  decodeRuns: number[];
  peakMlxBytes?: number;
  peakRssBytes: number;
  tokens: number[];
  versions?: Record<string, string>;
  /** Share of the machine's CPU other processes used during the run (set by the orchestrator). */
  othersCpu?: number;
};

type Profile = {
  ffiOpsPerStep: number;
  graphMs: number;
  evalMs: number;
  layersMs: number;
  lmHeadMs: number;
  linearsMs: number;
  perOpUs: number;
  matvecGBs: number;
  weightBytes: number;
  lmHeadBytes: number;
  /** 2 × parameters of the layers' linears: the FLOPs of one token through them. */
  linearFlops: number;
  kvBytes: number;
  sumGBs: number;
};

type OursResult = Result & { mode: string; activeAfterLoadBytes: number; profile: Profile };

// ---------------------------------------------------------------------------------------------
// Our engine, in a child process: `bun scripts/bench/model.ts --child <dense|quantized> <workload>`

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const msSince = (t0: number) => (Bun.nanoseconds() - t0) / 1e6;

function peakRss(): number {
  const m = readFileSync("/proc/self/status", "utf8").match(/VmHWM:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

/**
 * Prefill `ids` in one chunk (as mlx-lm does below its 2048-token step), then `n` greedy tokens
 * with the next step's graph queued before the current token is read (as generate() does).
 * Returns seconds to the first token, seconds for the `n` after it, and all n+1 tokens.
 */
function runOnce(m: LoadedModel, ids: number[], n: number): { prefill: number; decode: number; tokens: number[] } {
  const caches = m.model.makeCache();
  const V = m.model.vocabSize;
  const tokens: number[] = [];
  try {
    const t0 = Bun.nanoseconds();
    let tFirst = t0;
    const logits = prefill(m.model, ids, caches, ids.length);
    let cur: mx.MxArray | null = mx.tidy(() => mx.argmax(logits, -1));
    logits.free();
    mx.asyncEvaluate(cur);
    for (let k = 0; k <= n; k++) {
      let next: mx.MxArray | null = null;
      if (k < n) {
        const prev: mx.MxArray = cur!;
        const queued: mx.MxArray = mx.tidy(() => mx.argmax(mx.reshape(m.model.forward(mx.reshape(prev, [1, 1]), caches), [1, V]), -1));
        mx.asyncEvaluate(queued);
        next = queued;
      }
      tokens.push(cur!.item());
      cur!.free();
      if (k === 0) tFirst = Bun.nanoseconds();
      cur = next;
    }
    const tEnd = Bun.nanoseconds();
    return { prefill: (tFirst - t0) / 1e9, decode: (tEnd - tFirst) / 1e9, tokens };
  } finally {
    for (const c of caches) c.free();
  }
}

const bytesOf = (w: Weight) => ("scales" in w ? w.w.nbytes + w.scales.nbytes + w.biases.nbytes : w.nbytes);

/** One decode step taken apart: graph building in TypeScript vs evaluation, and the matmuls alone. */
function profileStep(m: LoadedModel, ids: number[]): Profile {
  const weights = (m.model as unknown as { weights: Weights }).weights;
  const layers = (m.model as unknown as { layers?: { forward(x: mx.MxArray, mask: null, c: LayerCache): mx.MxArray }[] }).layers;
  const spec = m.model.cacheSpec;
  const V = m.model.vocabSize;
  const timeIt = (n: number, fn: () => void) => {
    fn();
    const ts: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = Bun.nanoseconds();
      fn();
      ts.push(msSince(t0));
    }
    return median(ts);
  };
  const embedding = weights.weight("model.embed_tokens");
  const head = weights.has("lm_head") ? weights.weight("lm_head") : embedding;
  const inDim = (w: Weight) => ("scales" in w ? (w.w.shape[1] * 32) / w.bits : w.shape[1]);

  // Whole steps, synchronous, at context 512: graph building (TypeScript -> FFI) timed apart from evaluate().
  const caches = m.model.makeCache();
  const graph: number[] = [];
  const evals: number[] = [];
  let ops = 0;
  let layersMs = Number.NaN;
  try {
    mx.tidy(() => mx.evaluate(prefill(m.model, ids, caches, ids.length)));
    let id = 0;
    for (let i = 0; i < 12; i++) {
      mx.tidy(() => {
        const t0 = Bun.nanoseconds();
        const before = mx.handleCounts().live;
        const next = mx.argmax(mx.reshape(m.model.forward(mx.array(new Int32Array([id]), [1, 1], mx.Dtype.int32), caches), [1, V]), -1);
        ops = mx.handleCounts().live - before;
        const t1 = Bun.nanoseconds();
        mx.evaluate(next);
        const t2 = Bun.nanoseconds();
        id = next.item();
        if (i >= 2) { graph.push((t1 - t0) / 1e6); evals.push((t2 - t1) / 1e6); }
      });
    }
    // The embedding and the decoder layers alone, without the final norm and lm_head.
    if (layers?.length === spec.nLayers) {
      layersMs = timeIt(8, () => mx.tidy(() => {
        let h = embed(mx.array(new Int32Array([id]), [1, 1], mx.Dtype.int32), embedding);
        for (let l = 0; l < layers.length; l++) h = layers[l].forward(h, null, caches[l]);
        mx.evaluate(h);
      }));
    }
  } finally {
    for (const c of caches) c.free();
  }

  // The matmuls alone, on the model's own weights: lm_head, and the 7 linears of every layer.
  const prefixes: string[] = [];
  for (let l = 0; l < spec.nLayers; l++) {
    for (const p of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]) {
      prefixes.push(`model.layers.${l}.${p}`);
    }
  }
  const layerWeights = prefixes.map((p) => weights.weight(p));
  const xs = new Map<number, mx.MxArray>();
  const xOf = (d: number) => {
    if (!xs.has(d)) xs.set(d, mx.keep(mx.uniform([1, d], null, mx.Dtype.float32)));
    return xs.get(d)!;
  };
  const lmHeadMs = timeIt(8, () => mx.tidy(() => mx.evaluate(linear(xOf(inDim(head)), head))));
  const linearsMs = timeIt(5, () => mx.tidy(() => mx.evaluate(...layerWeights.map((w) => linear(xOf(inDim(w)), w)))));
  for (const x of xs.values()) x.free();

  // MLX's fixed cost per evaluated op: a chain of 1000 tiny adds, minus building it.
  const small = mx.keep(mx.uniform([1, 576], null, mx.Dtype.float32));
  mx.evaluate(small);
  const chain = (run: boolean) => mx.tidy(() => {
    let y = small;
    for (let i = 0; i < 1000; i++) y = mx.add(y, small);
    if (run) mx.evaluate(y);
  });
  const perOpUs = (timeIt(8, () => chain(true)) - timeIt(8, () => chain(false))) * 1000 / 1000;
  small.free();

  // Read-bandwidth probes over 256 MiB of float32: a float32 matrix-vector product (OpenBLAS,
  // all threads, as the dense matmuls run) and MLX's sum (one thread).
  const big = mx.keep(mx.uniform([16384, 4096], null, mx.Dtype.float32));
  const v = mx.keep(mx.uniform([1, 4096], null, mx.Dtype.float32));
  mx.evaluate(big, v);
  const matvecGBs = big.nbytes / 1e9 / (timeIt(5, () => mx.tidy(() => mx.evaluate(mx.matmul(v, mx.transpose(big))))) / 1000);
  const sumGBs = big.nbytes / 1e9 / (timeIt(5, () => mx.tidy(() => mx.evaluate(mx.sum(big)))) / 1000);
  big.free();
  v.free();

  const kvItem = mx.itemSize(spec.kvDtype);
  return {
    ffiOpsPerStep: ops,
    graphMs: median(graph),
    evalMs: median(evals),
    layersMs,
    lmHeadMs,
    linearsMs,
    perOpUs,
    matvecGBs,
    weightBytes: layerWeights.reduce((s, w) => s + bytesOf(w), 0) + bytesOf(head),
    linearFlops: layerWeights.reduce((s, w) => s + 2 * inDim(w) * ("scales" in w ? w.w.shape[0] : w.shape[0]), 0),
    lmHeadBytes: bytesOf(head),
    kvBytes: 2 * spec.nLayers * spec.nKvHeads * spec.headDim * ids.length * kvItem,
    sumGBs,
  };
}

async function child(mode: "dense" | "quantized", workloadPath: string, runs: number): Promise<void> {
  const w = JSON.parse(readFileSync(workloadPath, "utf8")) as Workload;
  const t0 = Bun.nanoseconds();
  const m = await loadModel(modelPath, { weights: mode });
  const loadMs = msSince(t0);
  const activeAfterLoadBytes = mx.memoryStats().active;
  runOnce(m, runs > 1 ? w.ids : w.ids.slice(0, 32), 4); // warm-up: allocations, BLAS threads (the whole prompt if affordable)
  const prefillRuns: number[] = [];
  const decodeRuns: number[] = [];
  let tokens: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = runOnce(m, w.ids, w.decode);
    if (r.tokens.length !== w.decode + 1) throw new Error(`generated ${r.tokens.length} tokens`);
    prefillRuns.push(r.prefill);
    decodeRuns.push(r.decode);
    tokens = r.tokens;
  }
  const peakMlxBytes = mx.memoryStats().peak;
  const peakRssBytes = peakRss();
  const profile = profileStep(m, w.ids);
  const result: OursResult = {
    mode, loadMs, activeAfterLoadBytes, peakMlxBytes, peakRssBytes, tokens, prefillRuns, decodeRuns,
    prefillTps: w.ids.length / Math.min(...prefillRuns),
    decodeTps: w.decode / Math.min(...decodeRuns),
    versions: { mlx: mx.mlxVersion(), device: mx.defaultDevice(), quantization: m.quantization, tag: m.tag },
    profile,
  };
  m.model.free();
  console.log(JSON.stringify(result));
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

const log = (msg: string) => process.stderr.write(`bench:model: ${msg}\n`);

/** Runs a measuring process; its last stdout line is its JSON result. Notes the CPU other processes took meanwhile. */
async function measure<T extends Result>(what: string, cmd: string[]): Promise<Peer<T>> {
  const r = await measureProcess<T>(what, cmd, { log, quietWaitS, threads, timeoutMs: peerTimeoutMs, timeoutHint: "(BENCH_PEER_TIMEOUT)" });
  if (r.ok) log(`${what}: prefill ${fmt(r.value.prefillTps)} tok/s, decode ${fmt(r.value.decodeTps)} tok/s`);
  return r;
}

/** The fixed prompt: a paragraph repeated, tokenized, the first 512 ids (no specials, no BOS). */
async function buildWorkload(): Promise<Workload> {
  const { loadTokenizer } = await import("../../shared/tokenizer/load-tokenizer.ts");
  const tok = loadTokenizer(modelPath);
  const text = "The history of the river valley is written in its stones. Farmers, traders and travellers crossed it for centuries, " +
    "and each left a mark: a bridge, a mill, a road, a song. ";
  const ids = tok.encode(text.repeat(Math.ceil((PROMPT_TOKENS * 8) / text.length))).slice(0, PROMPT_TOKENS);
  if (ids.length !== PROMPT_TOKENS) throw new Error(`prompt has ${ids.length} tokens`);
  return { ids, decode: DECODE_TOKENS, threads };
}

const mib = (b?: number) => (b === undefined ? "—" : `${(b / 2 ** 20).toFixed(0)} MiB`);
const ratio = (a: number, b: number) => (Number.isFinite(a / b) && b > 0 ? `${(a / b).toFixed(2)}×` : "—");

type Column = { key: string; label: string; run: Peer<Result> };

async function main(): Promise<void> {
  if (!existsSync(modelPath)) throw new Error(`${modelPath} is missing: run bun scripts/setup.ts`);
  const started = Bun.nanoseconds();
  const loadBefore = loadavg()[0];
  mkdirSync(peersDir, { recursive: true });
  const workloadPath = join(peersDir, "workload.json");
  writeFileSync(workloadPath, JSON.stringify(await buildWorkload()));

  // Peers' set-up first (cached after the first run), so no download runs beside a measurement.
  const converted = ensureConvertedModel(modelPath);
  const mlxLm = ensureMlxLm();
  const nlc = ensureNodeLlamaCpp();

  const self = [process.execPath, join(import.meta.dir, "model.ts"), "--child"];
  const mlxScript = join(import.meta.dir, "peers", "mlx_lm_bench.py");
  const notRun = (reason: string): Promise<Peer<Result>> => Promise.resolve({ ok: false, reason });
  const mlxRun = (what: string, python: Peer<string>, flags: string[], runs: number): Promise<Peer<Result>> => {
    if (!converted.ok) return notRun(`model conversion failed: ${converted.reason}`);
    if (!python.ok) return notRun(python.reason);
    return measure(what, [python.value, mlxScript, workloadPath, converted.value, "--repeats", String(runs), ...flags]);
  };
  const openblasPython: Peer<string> = mlxLm.ok ? mlxLm.value.openblas : mlxLm;
  const referencePython: Peer<string> = mlxLm.ok ? { ok: true, value: mlxLm.value.reference } : mlxLm;

  const cols: Column[] = [];
  const add = async (key: string, label: string, run: Promise<Peer<Result>>) => cols.push({ key, label, run: await run });
  // Fast engines first (ours in both weight modes, dense mlx-lm, llama.cpp: best of `repeats`), then
  // mlx-lm's 4-bit ones (MLX's CPU quantized matmul is slow: ~2 minutes a run, so one run each).
  await add("quantized", "ours, quantized (CPU default)", measure("ours, quantized 4-bit weights", [...self, "quantized", workloadPath, String(repeats)]));
  await add("dense", "ours, dense", measure("ours, dense float32 weights", [...self, "dense", workloadPath, String(repeats)]));
  await add("mlxDense", "mlx-lm, dense, OpenBLAS", mlxRun("mlx-lm, dequantized to float32, OpenBLAS", openblasPython, ["--dense"], repeats));
  await add("llama", "llama.cpp (node-llama-cpp)", nlc.ok
    ? measure("llama.cpp", [nlc.value.node, join(import.meta.dir, "peers", "llama_cpp_bench.mjs"), nlc.value.prefix, workloadPath, modelPath, String(repeats)])
    : notRun(nlc.reason));
  await add("mlxQ", "mlx-lm, 4-bit, OpenBLAS", mlxRun("mlx-lm, 4-bit as converted, OpenBLAS", openblasPython, [], 1));
  const elapsed = msSince(started) / 1000;
  await add("mlxQRef", "mlx-lm, 4-bit, wheel as shipped", elapsed > budgetS
    ? notRun(`skipped: ${elapsed.toFixed(0)} s in, past the ${budgetS} s budget (BENCH_BUDGET) that keeps the bench under 15 minutes`)
    : mlxRun("mlx-lm, 4-bit as converted, the wheel's reference BLAS", referencePython, [], 1));

  const run = { loadBefore, loadAfter: loadavg()[0], totalS: msSince(started) / 1000, threads };
  writeFileSync(resultsPath, JSON.stringify({ cols, run }));
  publish(render(cols, run));
}

/** The raw results of the last run, so the section's prose can be re-rendered without measuring again (--render). */
const resultsPath = join(peersDir, "bench-model-results.json");

function publish(body: string): void {
  if (!process.env.BENCH_DRY) writeSection("model", body);
  console.log(body);
}

type RunInfo = { loadBefore: number; loadAfter: number; totalS: number; threads: number };

function render(cols: Column[], run: RunInfo): string {
  const threads = run.threads;
  const by = (k: string) => cols.find((c) => c.key === k)?.run;
  const val = <T extends Result = Result>(k: string) => {
    const r = by(k);
    return r?.ok ? (r.value as T) : null;
  };
  const cell = (p: Peer<Result>, f: (x: Result) => string) => (p.ok ? f(p.value) : "not run");
  const row = (name: string, f: (x: Result) => string) => `| ${name} | ${cols.map((c) => cell(c.run, f)).join(" | ")} |`;
  const runsOf = (xs: number[], n: number) => xs.map((s) => fmt(n / s, 1)).join(", ");
  const table = [
    `| measure | ${cols.map((c) => c.label).join(" | ")} |`,
    `| --- | ${cols.map(() => "---").join(" | ")} |`,
    row(`**prefill tok/s** (${PROMPT_TOKENS} tokens)`, (x) => `**${fmt(x.prefillTps)}**`),
    row(`**decode tok/s** (${DECODE_TOKENS} tokens)`, (x) => `**${fmt(x.decodeTps)}**`),
    row("load (ms)", (x) => fmt(x.loadMs, 0)),
    row("peak MLX memory", (x) => mib(x.peakMlxBytes)),
    row("peak process RSS", (x) => mib(x.peakRssBytes)),
    row("each run: prefill tok/s", (x) => runsOf(x.prefillRuns, PROMPT_TOKENS)),
    row("each run: decode tok/s", (x) => runsOf(x.decodeRuns, DECODE_TOKENS)),
    row("CPU other processes took meanwhile", (x) => (x.othersCpu === undefined ? "—" : `${fmt(x.othersCpu * 100, 0)}%`)),
  ];

  const pairs: [string, string, string][] = [
    ["ours dense / mlx-lm dense (same MLX, same OpenBLAS, same float32 weights)", "dense", "mlxDense"],
    ["ours dense / llama.cpp", "dense", "llama"],
    ["ours quantized / mlx-lm 4-bit (same packed weights; ours through ffi/qmm_cpu.cpp)", "quantized", "mlxQ"],
    ["ours quantized / llama.cpp", "quantized", "llama"],
    ["ours as shipped (quantized) / mlx-lm as shipped (4-bit, wheel's BLAS)", "quantized", "mlxQRef"],
  ];
  const ratios = [
    "| ours / peer | prefill tok/s | decode tok/s | load time | peak RSS |",
    "| --- | --- | --- | --- | --- |",
    ...pairs.map(([name, x, y]) => {
      const a = val(x);
      const b = val(y);
      return a && b
        ? `| ${name} | ${ratio(a.prefillTps, b.prefillTps)} | ${ratio(a.decodeTps, b.decodeTps)} | ${ratio(a.loadMs, b.loadMs)} | ${ratio(a.peakRssBytes, b.peakRssBytes)} |`
        : `| ${name} | not run | not run | not run | not run |`;
    }),
  ];

  const problems = cols.filter((c) => !c.run.ok).map((c) => `- ${c.label}: not run — ${(c.run as { reason: string }).reason}`);
  const dense = val<OursResult>("dense");
  const quantized = val<OursResult>("quantized");
  const ref = dense?.tokens.slice(0, 16);
  const differ = cols.filter((c) => c.run.ok && ref && JSON.stringify(c.run.value.tokens.slice(0, 16)) !== JSON.stringify(ref)).map((c) => c.label);
  const mlxV = (val("mlxDense") ?? val("mlxQ") ?? val("mlxQRef"))?.versions;
  const llamaV = val("llama")?.versions;
  const versions = [
    `ours: MLX ${dense?.versions?.mlx ?? quantized?.versions?.mlx ?? "?"} (${dense?.versions?.device ?? "?"}, ${process.env.SEMANTIC_BLAS === "reference" ? "reference BLAS" : "OpenBLAS swapped in by scripts/setup.ts"}), weights ${dense?.versions?.quantization ?? "?"}`,
    mlxV ? `mlx-lm ${mlxV.mlx_lm} on MLX ${mlxV.mlx} (Python ${mlxV.python}), on the folder \`bun run convert\` writes (4-bit g32, 8-bit embeddings, float16 scales as stored)` : "mlx-lm: not run",
    llamaV ? `node-llama-cpp ${llamaV["node-llama-cpp"]} (llama.cpp release ${llamaV["llama.cpp"]}, ${llamaV.build} CPU binaries, Node ${llamaV.node}) on the GGUF itself` : "llama.cpp: not run",
  ];

  return [
    "## Model: SmolLM2-135M-Instruct Q4_1, prefill and decode (`bun run bench:model`)",
    "",
    `${machineLine()}. ${versions.join("; ")}.`,
    "",
    `Workload, the same token ids for every engine: a ${PROMPT_TOKENS}-token prompt (a fixed paragraph repeated, tokenized, its first ${PROMPT_TOKENS} ids), ` +
      `then ${DECODE_TOKENS} greedy tokens after the first (EOS is fed back, never a stop), ${threads} thread${threads === 1 ? "" : "s"} everywhere ` +
      `(\`OPENBLAS_NUM_THREADS\` for MLX, \`threads\` for llama.cpp${threads < cpus().length ? `; \`BENCH_THREADS=${threads}\` for this run, the default is the machine's ${cpus().length} cores` : ""}). Prefill tok/s = ${PROMPT_TOKENS} / time to the first token; ` +
      `decode tok/s = ${DECODE_TOKENS} / time from the first token to the last. Ours and mlx-lm queue the next step's graph before reading ` +
      `the current token. Best of ${repeats} runs after a warm-up; mlx-lm's 4-bit engines run once (MLX's CPU quantized matmul makes each run take minutes). ` +
      "Load = the loader call until the weights are resident (ours includes dequantizing for dense; llama.cpp: model + context). " +
      "Each engine runs in its own process; \"dense\" mlx-lm is `dequantize_model` after casting to float32, the same float32 weights as ours. " +
      (differ.length ? `The first 16 greedy tokens differ from ours for: ${differ.join(", ")} (summation order).` : "Every engine produced the same first 16 greedy tokens."),
    "",
    ...table,
    "",
    ...ratios,
    "",
    "Ratios are ours / peer: above 1 is better for tok/s, below 1 is better for load time and memory.",
    ...(problems.length ? ["", ...problems] : []),
    "",
    ...weightModeText(dense, quantized),
    "",
    ...profileText(dense, quantized),
    "",
    ...contentionNote(cols),
    `This run took ${run.totalS.toFixed(0)} s; 1-minute load average ${run.loadBefore.toFixed(2)} at its start and ${run.loadAfter.toFixed(2)} at its end ` +
      `on ${cpus().length} cores. The bench waits (up to ${quietWaitS} s) for a quiet second before each engine and records the CPU other processes took while it ran: ` +
      "shared cores slow the engines whose threads spin-wait on each other (llama.cpp's thread pool, OpenBLAS) far more than the share suggests.",
  ].join("\n");
}

/** A warning when other processes took a real share of the CPU while engines were measured. */
function contentionNote(cols: Column[]): string[] {
  const shares = cols.flatMap((c) => (c.run.ok && c.run.value.othersCpu !== undefined ? [c.run.value.othersCpu] : []));
  if (!shares.length || Math.max(...shares) < 0.25) return [];
  const lo = Math.round(Math.min(...shares) * 100);
  const hi = Math.round(Math.max(...shares) * 100);
  return [
    `**This run shared the machine:** other processes took ${lo === hi ? `${lo}%` : `${lo}–${hi}%`} of the CPU while the engines ran, so absolute ` +
      "numbers are low and noisy (see the spread of each run) and the profile's parts, timed at different moments, need not add up. " +
      "Every engine ran under the same conditions, so the ratios hold better than the absolute numbers. Re-run `bun run bench:model` on an idle machine.",
    "",
  ];
}

function weightModeText(d: OursResult | null, q: OursResult | null): string[] {
  if (!d || !q) return ["Weight modes: not compared (a run failed)."];
  const dec = q.decodeTps / d.decodeTps;
  const pre = q.prefillTps / d.prefillTps;
  return [
    "**Weight representation.** `loadModel(path, { weights })` takes `dense` (dequantized to float32 at load), `quantized` " +
      "(packed 4-bit, float32 activations on the CPU) or `auto` (the default; also `bun run generate --weights`). " +
      "`auto` picks **quantized** on the CPU when the project's kernel takes the model's packing (2/4/8 bits), else dense; quantized on the GPU. " +
      "On the CPU, in decode and short prompts the layers' matmuls run in the project's kernel (ffi/qmm_cpu.cpp, `bun run bench:qmm`): " +
      `${fmt(q.profile.linearFlops / 1e9 / (q.profile.linearsMs / 1000), 2)} GFLOP/s against ${fmt(d.profile.linearFlops / 1e9 / (d.profile.linearsMs / 1000), 2)} GFLOP/s dense, ` +
      `reading ${fmt(d.profile.weightBytes / q.profile.weightBytes, 1)}× fewer bytes; ` +
      (mx.cpuTilesTake(32, 4)
        ? "from 16 rows (prefill) the same kernel runs on this CPU's AMX tiles (ffi/qmm_amx.cpp; x carried to 16 bits). "
        : mx.cpuManyRowsTake(32, 4)
          ? "from 16 rows (prefill) on AVX-512 VNNI int16 panels (ffi/qmm_panels.cpp; x carried to 16 bits per group of 32). "
          : `above ${CPU_KERNEL_MAX_ROWS} rows (prefill) each layer is dequantized to float32 on the fly for OpenBLAS's sgemm. `) +
      `Here quantized / dense is ${dec.toFixed(2)}× in decode and ${pre.toFixed(2)}× in prefill, for ${mib(q.activeAfterLoadBytes)} of weights instead of ${mib(d.activeAfterLoadBytes)}.`,
  ];
}

function profileText(d: OursResult | null, q: OursResult | null): string[] {
  const lines: string[] = [
    `**Where decode time goes.** One step at context ${PROMPT_TOKENS}, taken apart in the same processes (synchronous, not pipelined; parts timed alone):`,
    "",
    "| | dense | quantized |",
    "| --- | --- | --- |",
  ];
  const add = (name: string, f: (p: Profile, o: OursResult) => string) =>
    lines.push(`| ${name} | ${d ? f(d.profile, d) : "—"} | ${q ? f(q.profile, q) : "—"} |`);
  const bw = (p: Profile) => (p.weightBytes + p.kvBytes) / 1e9 / (p.evalMs / 1000);
  add("pipelined decode, ms per token (table above)", (_p, o) => fmt(1000 / o.decodeTps, 1));
  add("building the step's graph in TypeScript (FFI)", (p) => `${fmt(p.graphMs, 2)} ms, ${p.ffiOpsPerStep} arrays`);
  add("evaluate() of the step (MLX compute)", (p) => `${fmt(p.evalMs, 1)} ms`);
  add("· embedding + 30 decoder layers", (p) => `${fmt(p.layersMs, 1)} ms`);
  add("· · their 210 matmuls alone", (p) => `${fmt(p.linearsMs, 1)} ms, ${mib(p.weightBytes - p.lmHeadBytes)}`);
  add(`· · the rest: KV update, attention over ${PROMPT_TOKENS} keys, norms, RoPE, SwiGLU`, (p) => `${fmt(p.layersMs - p.linearsMs, 1)} ms`);
  add("· final norm + lm_head + argmax", (p) => `${fmt(p.evalMs - p.layersMs, 1)} ms`);
  add("· · lm_head alone (576 → 49152, tied embedding)", (p) => `${fmt(p.lmHeadMs, 1)} ms, ${mib(p.lmHeadBytes)}`);
  add("the layers' matmuls: throughput, read bandwidth", (p) => `${fmt(p.linearFlops / 1e9 / (p.linearsMs / 1000), 2)} GFLOP/s, ${fmt((p.weightBytes - p.lmHeadBytes) / 1e9 / (p.linearsMs / 1000), 2)} GB/s`);
  add("MLX's fixed cost per evaluated op × arrays per step", (p) => `${fmt(p.perOpUs, 1)} µs × ${p.ffiOpsPerStep} = ${fmt((p.perOpUs * p.ffiOpsPerStep) / 1000, 1)} ms`);
  add("bytes read per token: weights + KV cache", (p) => `${mib(p.weightBytes)} + ${mib(p.kvBytes)}`);
  add("effective read bandwidth (bytes / evaluate time)", (p) => `${fmt(bw(p), 2)} GB/s`);
  add("bandwidth probes, 256 MiB float32: matvec (OpenBLAS) / MLX sum (1 thread)", (p) => `${fmt(p.matvecGBs, 1)} / ${fmt(p.sumGBs, 1)} GB/s`);
  lines.push("");
  if (d) {
    const p = d.profile;
    const probe = Math.max(p.matvecGBs, p.sumGBs);
    const bound = bw(p) >= 0.6 * probe;
    lines.push(
      `Dense: graph building in TypeScript is ${fmt(p.graphMs, 1)} ms of a ${fmt(p.graphMs + p.evalMs, 1)} ms step ` +
        `(${fmt((100 * p.graphMs) / (p.graphMs + p.evalMs), 1)}%), and the pipelined loop hides it behind the previous step's compute: ` +
        `FFI is not what bounds decode. Of the compute, the 30 layers take ${fmt((100 * p.layersMs) / p.evalMs, 0)}% ` +
        `(their matmuls ${fmt((100 * p.linearsMs) / p.evalMs, 0)}%) and the lm_head ${fmt((100 * p.lmHeadMs) / p.evalMs, 0)}% ` +
        `(the float32 49152×576 table is ${fmt((100 * p.lmHeadBytes) / p.weightBytes, 0)}% of the weight bytes). ` +
        `A token reads ${mib(p.weightBytes + p.kvBytes)} at ${fmt(bw(p), 1)} GB/s effective, against ${fmt(probe, 1)} GB/s measured: ` +
        (bound
          ? `dense decode is bound by memory bandwidth (float32 weights are ${q ? fmt(p.weightBytes / q.profile.weightBytes, 1) : "~4.7"}× the bytes of the 4-bit ones); the way up is fewer bytes per token — a fast 4-bit CPU kernel — not less FFI.`
          : `dense decode runs below the bandwidth limit: the matmuls reach ${fmt((p.weightBytes - p.lmHeadBytes) / 1e9 / (p.linearsMs / 1000), 1)} GB/s and the ` +
            `${fmt(p.layersMs - p.linearsMs, 1)} ms of small ops per step (MLX's CPU dispatch, ~${fmt(p.perOpUs, 0)} µs per op) are the rest.`),
    );
  }
  if (q) {
    const p = q.profile;
    lines.push(
      "",
      `Quantized: the same step reads ${mib(p.weightBytes + p.kvBytes)} (${d ? fmt(d.profile.weightBytes / p.weightBytes, 1) : "?"}× fewer weight bytes) ` +
        `and evaluates in ${fmt(p.evalMs, 1)} ms (${fmt(bw(p), 2)} GB/s): the project's quantized kernel (ffi/qmm_cpu.cpp) unpacks every ` +
        `weight, so its matmuls are compute-bound; they are ${fmt((100 * (p.lmHeadMs + p.linearsMs)) / p.evalMs, 0)}% of the step.`,
    );
  }
  return lines;
}

if (import.meta.main) {
  const [flag, mode, workloadPath, runs] = process.argv.slice(2);
  if (flag === "--child") await child(mode as "dense" | "quantized", workloadPath, Number(runs));
  else if (flag === "--render") {
    const saved = JSON.parse(readFileSync(resultsPath, "utf8")) as { cols: Column[]; run: RunInfo };
    publish(render(saved.cols, saved.run));
  } else await main();
}
