// One short request's worth of work before the server reports ready. The first forward in a
// process pays for thread start-up, page faults and the kernels' first-use buffers (~25-50 ms
// here), and the chat template's and tokenizer's first calls run slower too; without this the
// first request pays it, a restarted agent's next turn above all. llama.cpp's server warms up
// the same way.
import { buildChatPrompt } from "./api/prompt.ts";
import { array, Dtype, evaluate, tidy } from "./mlx/index.ts";
import type { LoadedModel } from "./models/load.ts";

/** Renders and tokenizes a short conversation, prefills it (at least 32 tokens) and decodes one step. */
export function warmUp(loaded: LoadedModel): void {
  const text = "Warm up: a short message, long enough for the prefill kernels. ".repeat(4);
  const { ids } = buildChatPrompt(loaded, { turns: [{ role: "user", text }], tools: [], toolChoice: { kind: "auto" } });
  const prompt = ids.length >= 32 ? ids : [...ids, ...Array.from({ length: 32 - ids.length }, () => ids[ids.length - 1])];
  const caches = loaded.model.makeCache();
  try {
    for (const step of [prompt, prompt.slice(-1)]) {
      tidy(() => evaluate(loaded.model.forward(array(Int32Array.from(step), [1, step.length], Dtype.int32), caches, { lastOnly: true })));
    }
  } finally {
    for (const c of caches) c.free();
  }
}
