// bun run bench:qmm — the quantized matmul from decode to prefill sizes: the project's CPU kernel
// (quantizedMatmulRows, ffi/qmm_cpu.cpp; from 16 rows on AMX tiles, ffi/qmm_amx.cpp, where the
// CPU has them, else with AVX-512 VNNI on int16 panels, ffi/qmm_panels.cpp) against MLX's quantized_matmul, a float32 matmul over the dequantized weights
// (what `dense` weights run), and per call our dequantize then that matmul. SmolLM2-135M's
// shapes, random weights.
//
//   BENCH_ROWS    rows (tokens in the batch), comma-separated (default 1,8,16,32,136,512: decode,
//                 an agent's next turn, a prefill chunk)
//   BENCH_ROUNDS  alternating rounds, best kept (default 3)
//   BENCH_QUIET_WAIT  seconds to wait for other processes to quiet down first (default 30)
import * as mx from "../../shared/mlx/index.ts";
import { CPU_KERNEL_MAX_ROWS } from "../../shared/models/nn.ts";
import { cpuJiffies, othersShare, secondsPerCall, waitForQuiet } from "./harness.ts";
import { machineLine, writeSection } from "./markdown-section.ts";

const ROWS = (process.env.BENCH_ROWS ?? "1,8,16,32,136,512").split(",").map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TARGET_S = 0.25; // time each measurement for about this long
const SLOW_LIMIT_S = 2; // one call of MLX's kernel past this: not repeated at larger sizes

type Shape = { name: string; n: number; k: number; bits: number; group: number };
const SHAPES: Shape[] = [
  { name: "gate/up 576→1536", n: 1536, k: 576, bits: 4, group: 32 },
  { name: "down 1536→576", n: 576, k: 1536, bits: 4, group: 32 },
  { name: "k/v 576→192", n: 192, k: 576, bits: 4, group: 32 },
  { name: "lm_head 576→49152", n: 49152, k: 576, bits: 8, group: 32 },
];

// Whether this CPU runs ours on AMX tiles, or else on AVX-512 VNNI panels, from 16 rows (the shapes'
// packings all take them or none).
const manyRows = mx.cpuTilesTake(32, 4) ? "AMX tiles" : mx.cpuManyRowsTake(32, 4) ? "AVX-512 VNNI int16 panels" : null;

type Kernel = "ours" | "mlx" | "dense" | "dequant";
const KERNELS: Kernel[] = ["ours", "mlx", "dense", "dequant"];
const LABEL: Record<Kernel, string> = {
  ours: manyRows ? `ours (quantizedMatmulRows; ${manyRows} from 16 rows)` : "ours (quantizedMatmulRows)",
  mlx: "MLX quantized_matmul",
  dense: "dense float32 matmul",
  dequant: "ours dequantize + float32 matmul",
};

await waitForQuiet(Number(process.env.BENCH_QUIET_WAIT ?? 30), (msg) => process.stderr.write(`bench:qmm: ${msg}\n`));
const started = { jiffies: cpuJiffies(), cpu: process.cpuUsage(), at: Bun.nanoseconds() };

const best = new Map<string, number>();
const slow = new Set<string>(); // shapes where MLX's kernel took too long at fewer rows
const key = (s: Shape, rows: number, k: Kernel) => `${s.name}|${rows}|${k}`;

for (const s of SHAPES) {
  const w = mx.keep(mx.tidy(() => mx.multiply(mx.subtract(mx.uniform([s.n, s.k], mx.randomKey(1)), 0.5), 0.1)));
  const q = mx.quantize(w, s.group, s.bits);
  const dense = mx.keep(mx.dequantize(q, mx.Dtype.float32));
  mx.evaluate(q.w, q.scales, q.biases, dense);
  w.free();
  for (const rows of ROWS) {
    const x = mx.keep(mx.uniform([rows, s.k], mx.randomKey(2)));
    mx.evaluate(x);
    const run: Record<Kernel, () => void> = {
      ours: () => mx.tidy(() => mx.evaluate(mx.quantizedMatmulRows(x, q))),
      mlx: () => mx.tidy(() => mx.evaluate(mx.quantizedMatmul(x, q))),
      dense: () => mx.tidy(() => mx.evaluate(mx.matmul(x, mx.transpose(dense)))),
      dequant: () => mx.tidy(() => mx.evaluate(mx.matmul(x, mx.transpose(mx.dequantizeFloat32(q))))),
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const k of KERNELS) {
        if (k === "mlx" && slow.has(s.name)) continue;
        const t = secondsPerCall(TARGET_S, run[k]);
        const id = key(s, rows, k);
        best.set(id, Math.min(t, best.get(id) ?? Infinity));
        if (k === "mlx" && t > SLOW_LIMIT_S / 4) slow.add(s.name);
      }
    }
    x.free();
  }
  mx.dispose([q.w, q.scales, q.biases, dense]);
}

const ownCpuS = (({ user, system }) => (user + system) / 1e6)(process.cpuUsage(started.cpu));
const others = othersShare(started.jiffies, cpuJiffies(), ownCpuS);
const runS = (Bun.nanoseconds() - started.at) / 1e9;

const packedBytes = (s: Shape) => (s.n * s.k * s.bits) / 8 + 2 * 4 * s.n * (s.k / s.group); // + float32 scales, biases
const fmt = (v: number, digits = 1) => (v >= 100 ? v.toFixed(0) : v.toFixed(digits));

const lines: string[] = [];
for (const s of SHAPES) {
  for (const rows of ROWS) {
    const ours = best.get(key(s, rows, "ours"))!;
    const cells = KERNELS.map((k) => {
      const t = best.get(key(s, rows, k));
      if (t === undefined) return "not run";
      const gflops = (2 * rows * s.n * s.k) / t / 1e9;
      const bytes = k === "dense" ? 4 * s.n * s.k : packedBytes(s);
      const ratio = k === "ours" ? "" : `, ours ${fmt(t / ours, 2)}×`;
      return `${fmt(t * 1e6)} µs · ${fmt(gflops)} GFLOP/s · ${fmt(bytes / t / 1e9)} GB/s${ratio}`;
    });
    lines.push(`| ${s.name} (q${s.bits}g${s.group}) | ${rows} | ${cells.join(" | ")} |`);
  }
}

const models = manyRows
  ? `The models' \`linear()\` uses ours at every row count on this CPU (${manyRows} from 16 rows)`
  : `The models' \`linear()\` uses ours up to ${CPU_KERNEL_MAX_ROWS} rows on the CPU and "ours dequantize + float32 matmul" above (prefill)`;
const body = `## Quantized matmul, decode to prefill sizes (\`bun run bench:qmm\`)

${machineLine()}, MLX ${mx.mlxVersion()} (${mx.defaultDevice()}); ours on ${mx.quantizedMatmulThreads()} thread(s), OpenBLAS on \`OPENBLAS_NUM_THREADS\`=${process.env.OPENBLAS_NUM_THREADS ?? "its default"}. Random weights in SmolLM2-135M's shapes, x (rows × in) float32; each cell: time per evaluated call (best of ${ROUNDS} alternating rounds, each ~${TARGET_S} s), GFLOP/s = 2·rows·in·out / time, GB/s = weight bytes read / time (packed values + float32 scales and biases for the quantized kernels, float32 weights for dense; "dequantize + matmul" reads the packed bytes, then writes and reads a float32 copy). "ours N×" = that kernel's time / ours: above 1, ours is faster.

| matmul | rows | ${KERNELS.map((k) => LABEL[k]).join(" | ")} |
| --- | --- | ${KERNELS.map(() => "---").join(" | ")} |
${lines.join("\n")}

"not run": MLX's kernel took over ${SLOW_LIMIT_S / 4} s a call at fewer rows. ${models}. This run took ${runS.toFixed(0)} s; other processes took ${others === undefined ? "an unknown share" : `${(others * 100).toFixed(0)}%`} of the CPUs meanwhile.`;

writeSection("qmm", body);
console.log(body);
