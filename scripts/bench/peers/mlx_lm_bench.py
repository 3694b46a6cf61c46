"""mlx-lm on the bench:model workload: prefill the same prompt ids, then greedy decode a fixed
number of tokens (EOS does not stop generate_step, which is the loop mlx-lm's own generate uses).

usage: python mlx_lm_bench.py <workload.json> <mlx model folder> [--dense] [--float32] [--repeats N]
  --dense    dequantize the weights to float32 at load (mlx-lm's dequantize_model), as our CPU default does
  --float32  cast floating parameters (scales, norms) to float32, keeping the 4-bit weights
Prints one JSON object on stdout.
"""

import argparse
import json
import resource
import sys
import time

import mlx.core as mx
from pathlib import Path

from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import dequantize_model, load_model


def argmax_sampler(logprobs: mx.array) -> mx.array:
    return mx.argmax(logprobs, axis=-1)


def run_once(model, ids: list[int], decode: int) -> tuple[float, float, list[int]]:
    """Returns (prefill seconds to the first token, seconds for `decode` more tokens, tokens)."""
    prompt = mx.array(ids, dtype=mx.uint32)
    cache = make_prompt_cache(model)
    out: list[int] = []
    t0 = time.perf_counter()
    t_first = t0
    for n, (tok, _) in enumerate(generate_step(prompt, model, max_tokens=decode + 1, sampler=argmax_sampler, prompt_cache=cache)):
        out.append(int(tok))
        if n == 0:
            t_first = time.perf_counter()
    t_end = time.perf_counter()
    if len(out) != decode + 1:
        raise RuntimeError(f"generated {len(out)} tokens, wanted {decode + 1}")
    return t_first - t0, t_end - t_first, out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("model")
    p.add_argument("--dense", action="store_true", help="dequantize to float32 at load")
    p.add_argument("--float32", action="store_true", help="cast floating parameters (scales, norms) to float32")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    with open(a.workload) as f:
        w = json.load(f)
    ids: list[int] = w["ids"]
    decode: int = w["decode"]

    t0 = time.perf_counter()
    # The model only: the workload is token ids, so mlx-lm's tokenizer is not involved.
    model, _config = load_model(Path(a.model))
    if a.float32 or a.dense:
        model.set_dtype(mx.float32)  # scales first, so dequantizing does not round through float16
    if a.dense:
        model = dequantize_model(model)
    mx.eval(model.parameters())
    load_s = time.perf_counter() - t0

    # Warm-up (first-call costs: allocations, BLAS threads): the whole prompt when several runs
    # are timed, a short one when the engine is too slow to afford it.
    run_once(model, ids if a.repeats > 1 else ids[:32], 4)

    prefill, decode_s, tokens = [], [], []
    for _ in range(a.repeats):
        pf, dc, tokens = run_once(model, ids, decode)
        prefill.append(pf)
        decode_s.append(dc)
    json.dump({
        "loadMs": load_s * 1000,
        "prefillTps": len(ids) / min(prefill),
        "decodeTps": decode / min(decode_s),
        "prefillRuns": prefill,
        "decodeRuns": decode_s,
        "peakMlxBytes": mx.get_peak_memory(),
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "tokens": tokens,
        "versions": {"mlx": mx.__version__, "mlx_lm": __import__("mlx_lm").__version__, "python": sys.version.split()[0]},
        "weights": "dense" if a.dense else "quantized",
        "dtype": str(model.model.layers[0].mlp.up_proj.weight.dtype if a.dense else model.model.layers[0].mlp.up_proj.scales.dtype),
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
