"""mlx-lm on the bench:agents workload: N agents x T turns, round-robin, one request at a time,
through the prompt cache of mlx-lm's own server: an LRUPromptCache (max 10 entries, the default
of `mlx_lm.server --prompt-cache-size`) queried and filled exactly as the server's request path
does (fetch_nearest_cache on the prompt ids, a fresh make_prompt_cache on a miss, generation on
the rest, insert_cache of prompt + generated ids), with generate_step, the loop the server's
stream_generate wraps (greedy, prefill steps of 2048 as the server's default). Without HTTP.

usage: python mlx_lm_agents.py <workload.json> <mlx model folder> [--dense]
Prints one JSON object on stdout; progress on stderr.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache
from mlx_lm.utils import dequantize_model, load_model


def greedy(logprobs):
    return mx.argmax(logprobs, axis=-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("model")
    p.add_argument("--dense", action="store_true")
    a = p.parse_args()
    with open(a.workload) as f:
        w = json.load(f)
    t0 = time.perf_counter()
    model, _ = load_model(Path(a.model))
    if a.dense:
        model = dequantize_model(model)
        model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    load_ms = (time.perf_counter() - t0) * 1000

    # Warm-up on a short prompt of its own (not cached).
    for _ in generate_step(mx.array(w["agents"][0]["first"][:32]), model, max_tokens=2, sampler=greedy, prompt_cache=make_prompt_cache(model)):
        pass

    eos = set(w["eos"])
    prompt_cache = LRUPromptCache(max_size=10)
    model_key = a.model
    prompts = [list(ag["first"]) for ag in w["agents"]]
    turns = []
    for t in range(1, w["turns"] + 1):
        for i, ag in enumerate(w["agents"]):
            if t > 1:
                prompts[i] += ag["next"][t - 2]
            prompt = prompts[i]
            start = time.perf_counter()
            cache, rest = prompt_cache.fetch_nearest_cache(model_key, prompt)
            cached = len(prompt) - len(rest)
            if cache is None:
                cache = make_prompt_cache(model)
            cache_key = prompt[:]
            reply = []
            ttft = None
            for token, _ in generate_step(mx.array(rest), model, max_tokens=w["decode"], sampler=greedy, prompt_cache=cache, prefill_step_size=2048):
                if ttft is None:
                    ttft = (time.perf_counter() - start) * 1000
                token = int(token)
                cache_key.append(token)
                if token in eos:
                    break
                reply.append(token)
            total = (time.perf_counter() - start) * 1000
            prompt_cache.insert_cache(model_key, cache_key, cache)
            turns.append({"agent": i, "turn": t, "ttftMs": ttft, "totalMs": total, "promptTokens": len(prompt), "cachedTokens": cached, "completionTokens": len(cache_key) - len(prompt)})
            print(f"mlx-lm: agent {i + 1} turn {t}: {len(prompt)} prompt tokens ({cached} cached), TTFT {ttft:.0f} ms", file=sys.stderr, flush=True)
            prompts[i] = prompt + reply + w["close"]

    json.dump({
        "turns": turns,
        "versions": {"mlx": mx.__version__, "mlx_lm": __import__("mlx_lm").__version__, "python": sys.version.split()[0]},
        "weights": "dense float32" if a.dense else "quantized",
        "loadMs": load_ms,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
