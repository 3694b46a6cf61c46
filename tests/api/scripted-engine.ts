// A TEST DOUBLE of the Engine interface: it yields scripted text instead of running a model,
// so the HTTP/API translation layer (tool-call parsing, SSE framing, error mapping) can be
// checked deterministically. It uses the real SmolLM2 tokenizer and chat template (prompt ids
// are real); only generation is scripted. Real-model behaviour is tested in tests/functions.
import { ContextLengthError, type Engine, type EngineEvent, type FinishReason, type GenerationRequest, QueueFullError } from "../../shared/engine/engine.ts";
import { Metrics } from "../../shared/metrics.ts";
import type { LoadedModel } from "../../shared/models/load.ts";
import { defaultModelPath } from "../../shared/paths.ts";
import { createApp, type ServerConfig, type Services } from "../../shared/server.ts";
import { ChatTemplate } from "../../shared/tokenizer/chat-template.ts";
import { loadTokenizer } from "../../shared/tokenizer/load-tokenizer.ts";

export type Script = {
  /** Text pieces, one token event each. */
  pieces: string[];
  reason?: FinishReason;
  cachedTokens?: number;
  /** Throw this after the pieces instead of finishing. */
  failWith?: Error;
  /** Wait before each piece (ms). */
  delayMs?: number;
  /** Wait before "started" (ms): a long queue wait or prefill. */
  startDelayMs?: number;
  /** Refuse before "queued" (e.g. a busy agent's AgentBusyError). */
  refuseWith?: Error;
};

let sharedModel: LoadedModel | null = null;

/** The real tokenizer and chat template of the default model, with a stub in place of the weights. */
export function scriptedModel(contextLength = 8192): LoadedModel {
  if (!sharedModel) {
    const tokenizer = loadTokenizer(defaultModelPath());
    sharedModel = {
      id: "SmolLM2-135M-Instruct.Q4_1",
      source: defaultModelPath(),
      tokenizer,
      chatTemplate: new ChatTemplate(tokenizer.chatTemplate, { bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken }),
      tag: "scripted",
      weightMode: "dense",
      quantization: "none",
      model: null as never,
    };
  }
  return { ...sharedModel, model: { contextLength } as never };
}

export class ScriptedEngine implements Engine {
  readonly requests: GenerationRequest[] = [];
  /** The script for each next request (the last one repeats). */
  scripts: Script[] = [{ pieces: ["Hello", " there"] }];
  /** Makes submit throw QueueFullError. */
  queueFull = false;
  running = 0;

  constructor(readonly loaded: LoadedModel) {}

  load() {
    return { queued: 0, running: this.running };
  }

  submit(req: GenerationRequest): AsyncIterable<EngineEvent> {
    const limit = this.loaded.model.contextLength;
    if (req.promptIds.length + 1 > limit) throw new ContextLengthError(req.promptIds.length, limit);
    if (this.queueFull) throw new QueueFullError("64 requests are queued", 3);
    this.requests.push(req);
    const script = this.scripts.length > 1 ? this.scripts.shift()! : this.scripts[0];
    return this.#run(req, script);
  }

  async *#run(req: GenerationRequest, s: Script): AsyncGenerator<EngineEvent> {
    this.running++;
    try {
      const cached = s.cachedTokens ?? 0;
      if (s.refuseWith) throw s.refuseWith;
      yield { type: "queued" };
      if (s.startDelayMs) await Bun.sleep(s.startDelayMs);
      yield { type: "started", promptTokens: req.promptIds.length, cachedTokens: cached, queueMs: 0 };
      let n = 0;
      let reason: FinishReason = s.reason ?? "eos";
      for (const text of s.pieces) {
        if (n >= req.maxTokens) {
          reason = "length";
          break;
        }
        if (req.signal?.aborted) {
          reason = "cancelled";
          break;
        }
        if (s.delayMs) await Bun.sleep(s.delayMs);
        n++;
        yield { type: "token", id: 0, text };
      }
      if (s.failWith) throw s.failWith;
      yield {
        type: "done", reason, stop: reason === "stop" ? (req.stop[0] ?? null) : null, promptTokens: req.promptIds.length,
        completionTokens: n, cachedTokens: cached, cacheCreatedTokens: 0, timeToFirstTokenMs: 1, totalMs: 2,
      };
    } finally {
      this.running--;
    }
  }
}

/** An app over a ScriptedEngine, listening on loopback (real HTTP), for translation-layer tests. */
export function scriptedServer(config: Partial<ServerConfig> = {}, contextLength = 8192, idleTimeoutSeconds?: number, services: Partial<Services> = {}) {
  const engine = new ScriptedEngine(scriptedModel(contextLength));
  const metrics = services.metrics ?? new Metrics();
  metrics.watch(() => engine);
  const app = createApp(
    { mlxVersion: "test", device: "cpu", startedAt: Date.now(), engine: () => engine, pool: () => null, metrics, ...services },
    { bindHost: "127.0.0.1", apiKeys: [], ...config },
  ).listen({ hostname: "127.0.0.1", port: 0, ...(idleTimeoutSeconds ? { idleTimeout: idleTimeoutSeconds } : {}) });
  const base = `http://127.0.0.1:${app.server!.port}`;
  return { app, engine, base, metrics, stop: () => app.stop(true) };
}
