// bun run bench:ffi — what crossing bun:ffi costs: ns per trivial call, and a model-sized
// quantized matmul (576x1536, 4-bit, group 32) driven from TypeScript vs the same loop in C++.
import { join } from "node:path";
import * as mx from "../../shared/mlx/index.ts";
import { lib, out } from "../../shared/mlx/native.ts";
import { depsDir, repoRoot } from "../../shared/paths.ts";
import { machineLine, writeSection } from "./markdown-section.ts";

const iters = Number(process.env.BENCH_ITERS ?? 300);

function nsPerCall(n: number, fn: () => void): number {
  for (let i = 0; i < 1000; i++) fn();
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < n; i++) fn();
  return (Bun.nanoseconds() - t0) / n;
}

const probe = mx.keep(mx.array([1, 2, 3]));
const ndim = lib().sm_array_ndim;
const rawNs = nsPerCall(1_000_000, () => ndim(out, probe.handle));
const opNs = nsPerCall(100_000, () => mx.tidy(() => mx.add(probe, probe)));

const mlxDir = process.env.MLX_DIR ?? (await Array.fromAsync(new Bun.Glob("mlx-*/mlx").scan({ cwd: depsDir, onlyFiles: false })))[0];
const mlxRoot = process.env.MLX_DIR ?? join(depsDir, mlxDir);
const exe = join(depsDir, "build", "bench-qmm-loop");
// An executable, unlike the project's shared library, must resolve libmlx's own dependencies at
// link time: OpenBLAS (swapped in by setup.ts) needs the libgfortran.so.5 beside it in the wheel's
// *.libs folder, which ld does not find through libmlx's rpath.
const wheelLibs = (await Array.fromAsync(new Bun.Glob("*.libs").scan({ cwd: join(mlxRoot, ".."), onlyFiles: false }))).map((d) => join(mlxRoot, "..", d));
const build = Bun.spawnSync([process.env.CXX ?? "c++", join(repoRoot, "scripts/bench/qmm_loop.cpp"), "-o", exe, "-std=c++20", "-O2",
  `-I${join(mlxRoot, "include")}`, `-L${join(mlxRoot, "lib")}`, "-lmlx", `-Wl,-rpath,${join(mlxRoot, "lib")}`, ...wheelLibs.map((d) => `-Wl,-rpath-link,${d}`)]);
if (build.exitCode !== 0) throw new Error(`building the C++ baseline failed:\n${build.stderr}`);

function tsLoop(rows: number): number {
  const q = mx.tidy(() => mx.quantize(mx.multiply(mx.array(Float32Array.from({ length: 1536 * 576 }, (_, i) => Math.sin(i) * 0.02), [1536, 576]), 1), 32, 4));
  const x = mx.array(Float32Array.from({ length: rows * 576 }, (_, i) => Math.cos(i)), [rows, 576]);
  mx.evaluate(q.w, q.scales, q.biases, x);
  const step = () => mx.tidy(() => mx.evaluate(mx.quantizedMatmul(x, q)));
  for (let i = 0; i < 10; i++) step();
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < iters; i++) step();
  const us = (Bun.nanoseconds() - t0) / iters / 1000;
  mx.dispose([q.w, q.scales, q.biases, x]);
  return us;
}

// Alternate the two sides and keep each one's best of 3, so machine noise hits both alike.
const results = new Map<number, { ts: number; cpp: number }>();
for (let round = 0; round < 3; round++) {
  const cppOut = Bun.spawnSync([exe, String(iters)]).stdout.toString().trim().split("\n");
  for (const line of cppOut) {
    const [rows, us] = line.split(" ").map(Number);
    const ts = tsLoop(rows);
    const prev = results.get(rows);
    results.set(rows, { ts: Math.min(ts, prev?.ts ?? Infinity), cpp: Math.min(us, prev?.cpp ?? Infinity) });
  }
}

const rowsTable = [...results].map(([rows, r]) =>
  `| qmm x(${rows}x576) · W(1536x576, q4 g32) | ${r.ts.toFixed(1)} µs | ${r.cpp.toFixed(1)} µs | ${(r.ts / r.cpp).toFixed(3)} | ${(((r.ts - r.cpp) / r.cpp) * 100).toFixed(1)}% |`);

const body = `## FFI overhead (\`bun run bench:ffi\`)

${machineLine()}, MLX ${mx.mlxVersion()} (${mx.defaultDevice()}). Best of 3 alternating rounds, ${iters} iterations each.

| measure | value |
| --- | --- |
| raw bun:ffi call (\`sm_array_ndim\`) | ${rawNs.toFixed(1)} ns |
| one op from TypeScript (\`tidy(() => add(a, a))\`: graph node, handle, wrapper, free) | ${(opNs / 1000).toFixed(2)} µs |

| loop | TypeScript → FFI → MLX | C++ → MLX | ratio | overhead |
| --- | --- | --- | --- | --- |
${rowsTable.join("\n")}

Target: overhead under 5% at model-sized ops.`;

writeSection("ffi", body);
console.log(body);
