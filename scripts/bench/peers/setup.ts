// Set-up of bench:model's peers, idempotent and cached like scripts/setup.ts: every step is
// skipped when its stamp matches, so a second run does no network I/O. Nothing here touches the
// project's own packages: the peers live in git-ignored folders under .deps/peers.
//   mlx-lm        a Python venv with requirements-mlx-lm.txt (same MLX as ours), twice: as the
//                 mlx-cpu wheel ships it (reference BLAS) and with OpenBLAS swapped in as our set-up does
//   llama.cpp     node-llama-cpp (npm, prebuilt CPU binaries) installed with --prefix
//   the model     the embedded GGUF converted to an MLX folder (scripts/convert.ts) for mlx-lm
// A peer that cannot be set up is reported with the reason, never thrown: the bench goes on without it.
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { convertGguf } from "../../convert.ts";
import { cacheDir, depsDir, repoRoot } from "../../../shared/paths.ts";
import { OPENBLAS_WHEELS } from "../../../shared/pins.ts";

export const peersDir = join(depsDir, "peers");
export const NODE_LLAMA_CPP_VERSION = "3.22.1";

export type Peer<T> = { ok: true; value: T } | { ok: false; reason: string };

const log = (msg: string) => process.stderr.write(`bench:model peers: ${msg}\n`);

function run(cmd: string[], cwd = repoRoot): void {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    const tail = `${r.stderr.toString()}${r.stdout.toString()}`.trim().split("\n").slice(-6).join(" | ");
    throw new Error(`${cmd.slice(0, 4).join(" ")} ... failed (${r.exitCode}): ${tail}`);
  }
}

const stampOf = (...parts: string[]) => createHash("sha256").update(parts.join("\0")).digest("hex");
const readStamp = (p: string) => (existsSync(p) ? readFileSync(p, "utf8").trim() : null);

function attempt<T>(what: string, fn: () => T): Peer<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    const reason = (e as Error).message.replace(/\s+/g, " ").slice(0, 400);
    log(`${what}: ${reason}`);
    return { ok: false, reason };
  }
}

/** Builds `dir` through a temporary sibling and a rename, so an interrupted run leaves nothing half made. */
function buildInto(dir: string, stamp: string, build: (tmp: string) => void): string {
  if (readStamp(join(dir, ".bench-stamp")) === stamp) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    build(tmp);
    writeFileSync(join(tmp, ".bench-stamp"), stamp);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

export type MlxLmEnvs = { reference: string; openblas: Peer<string> };

/** Python executables of the two mlx-lm venvs. */
export function ensureMlxLm(): Peer<MlxLmEnvs> {
  return attempt("mlx-lm", () => {
    const requirements = join(import.meta.dir, "requirements-mlx-lm.txt");
    const python = Bun.which("python3");
    if (!python) throw new Error("python3 not found");
    const pyVersion = Bun.spawnSync([python, "--version"]).stdout.toString().trim();
    const want = stampOf(readFileSync(requirements, "utf8"), pyVersion);
    const venv = join(peersDir, "mlx-lm-venv");
    mkdirSync(peersDir, { recursive: true });
    if (readStamp(join(venv, ".bench-stamp")) !== want) log("creating the mlx-lm venv (pip install -r scripts/bench/peers/requirements-mlx-lm.txt)");
    // venvs hold their own path, so this one is built in place (the stamp is written last).
    if (readStamp(join(venv, ".bench-stamp")) !== want) {
      rmSync(venv, { recursive: true, force: true });
      run([python, "-m", "venv", venv]);
      run([join(venv, "bin", "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", requirements]);
      writeFileSync(join(venv, ".bench-stamp"), want);
    }
    const reference = join(venv, "bin", "python");
    const openblas = attempt("mlx-lm with OpenBLAS", () => {
      const blas = OPENBLAS_WHEELS[`${process.platform}-${process.arch}`];
      if (!blas) throw new Error(`no pinned OpenBLAS for ${process.platform}-${process.arch}`);
      const wheel = join(cacheDir(), "downloads", blas.file);
      if (!existsSync(wheel)) throw new Error(`${wheel} is missing (bun scripts/setup.ts downloads it)`);
      const dir = join(peersDir, "mlx-lm-openblas-venv");
      const stamp = stampOf(want, blas.sha256);
      if (readStamp(join(dir, ".bench-stamp")) !== stamp) {
        log("copying the mlx-lm venv and swapping OpenBLAS into its mlx_cpu.libs");
        rmSync(dir, { recursive: true, force: true });
        cpSync(venv, dir, { recursive: true, verbatimSymlinks: true });
        const libs = join(dir, "lib", readdirSync(join(dir, "lib")).find((n) => n.startsWith("python"))!, "site-packages", "mlx_cpu.libs");
        const unpacked = join(peersDir, `.openblas-${process.pid}`);
        try {
          run(["python3", "-m", "zipfile", "-e", wheel, unpacked]);
          swapInOpenBlas(libs, join(unpacked, "cmeel.prefix", "lib", "libopenblas.so.0"));
        } finally {
          rmSync(unpacked, { recursive: true, force: true });
        }
        writeFileSync(join(dir, ".bench-stamp"), stamp);
      }
      return join(dir, "bin", "python");
    });
    return { reference, openblas };
  });
}

/** The same swap as scripts/setup.ts: OpenBLAS under the wheel's BLAS and LAPACK file names. */
function swapInOpenBlas(libs: string, openblas: string): void {
  const names = readdirSync(libs);
  const targets = names.filter((n) => /^lib(blas|lapack)-[0-9a-f]+\.so/.test(n));
  const gfortran = names.find((n) => n.startsWith("libgfortran-"));
  if (targets.length !== 2 || !gfortran) throw new Error(`unexpected layout of ${libs}: ${names.join(", ")}`);
  for (const t of targets) copyFileSync(openblas, join(libs, t));
  if (!existsSync(join(libs, "libgfortran.so.5"))) symlinkSync(gfortran, join(libs, "libgfortran.so.5"));
}

/** The folder node-llama-cpp is installed under (npm --prefix), with the node binary to run it. */
export function ensureNodeLlamaCpp(): Peer<{ prefix: string; node: string }> {
  return attempt("node-llama-cpp", () => {
    const node = Bun.which("node");
    const npm = Bun.which("npm");
    if (!node || !npm) throw new Error("node and npm are needed (node-llama-cpp runs under Node)");
    const dir = join(peersDir, "node-llama-cpp");
    const want = stampOf(NODE_LLAMA_CPP_VERSION, process.platform, process.arch);
    buildInto(dir, want, (tmp) => {
      log(`installing node-llama-cpp@${NODE_LLAMA_CPP_VERSION} (prebuilt binaries, ~700 MB) into ${dir}`);
      mkdirSync(tmp, { recursive: true });
      // --ignore-scripts: its postinstall would only try to build llama.cpp from GitHub sources;
      // the prebuilt binaries arrive as optional dependencies.
      run([npm, "install", "--prefix", tmp, "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact", `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`]);
    });
    return { prefix: dir, node };
  });
}

/** Every peer (cached): run before a benchmark that drives them, so no set-up runs beside a measurement. */
export function ensurePeers(gguf: string): void {
  for (const p of [ensureConvertedModel(gguf), ensureMlxLm(), ensureNodeLlamaCpp()]) if (!p.ok) log(`not set up: ${p.reason}`);
}

/** The GGUF converted to an MLX folder (for mlx-lm), rebuilt when the GGUF changes. */
export function ensureConvertedModel(gguf: string): Peer<string> {
  return attempt("convert", () => {
    const dir = join(peersDir, "smollm2-mlx");
    const convert = join(repoRoot, "scripts", "convert.ts");
    const st = statSync(gguf);
    const want = stampOf(gguf, String(st.size), String(st.mtimeMs), readFileSync(convert, "utf8"));
    return buildInto(dir, want, (tmp) => {
      log(`converting ${gguf} -> ${dir}`);
      convertGguf(gguf, tmp);
    });
  });
}
