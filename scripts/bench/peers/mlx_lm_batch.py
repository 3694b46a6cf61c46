"""mlx-lm's continuous batching (BatchGenerator, the loop behind its batched server) on the
bench:batch workload: N prompts inserted at once, greedy, no stop tokens, a fixed number of tokens
each; the arrival time of every token. Weights dequantized to float32 with --dense, as ours run
on the CPU.

usage: python mlx_lm_batch.py <workload.json> <mlx model folder> [--dense]
Prints one JSON object on stdout.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import BatchGenerator
from mlx_lm.utils import dequantize_model, load_model


def run_level(model, prompts, decode):
    """Per stream: token arrival times (ms after insert) and token ids."""
    n = len(prompts)
    gen = BatchGenerator(model, max_tokens=decode, completion_batch_size=n, prefill_batch_size=min(8, n))
    t0 = time.perf_counter()
    uids = gen.insert(prompts, [decode] * n)
    times = {u: [] for u in uids}
    tokens = {u: [] for u in uids}
    while responses := gen.next_generated():
        now = (time.perf_counter() - t0) * 1000
        for r in responses:
            times[r.uid].append(now)
            tokens[r.uid].append(int(r.token))
    gen.close()
    return {"times": [times[u] for u in uids], "tokens": [tokens[u] for u in uids]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("model")
    p.add_argument("--dense", action="store_true")
    a = p.parse_args()
    with open(a.workload) as f:
        w = json.load(f)
    model, _ = load_model(Path(a.model))
    if a.dense:
        model = dequantize_model(model)
        model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    run_level(model, w["prompts"][:2], 8)  # warm-up
    levels = []
    for n in w["levels"]:
        levels.append({"n": n, "runs": [run_level(model, w["prompts"][:n], w["decode"]) for _ in range(w["repeats"])]})
    json.dump({
        "levels": levels,
        "versions": {"mlx": mx.__version__, "mlx_lm": __import__("mlx_lm").__version__, "python": sys.version.split()[0]},
        "weights": "dense float32" if a.dense else "quantized",
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
