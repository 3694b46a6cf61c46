// The long-lived server process: reads the settings (flags > environment > config file >
// defaults, shared/config.ts), listens, loads the model, opens the block pool, starts the engine
// and prints one line when ready: "semantic ready on URL". /ready answers 503 until the engine is
// set (during a hub download, which is async; a local load is one synchronous MLX call). Logs are
// JSON lines on stderr (shared/log.ts); SIGTERM/SIGINT drain and exit 0 (shared/shutdown.ts).
import { BlockPool } from "./cache/index.ts";
import { configOrExit, modelAliasSpec } from "./config.ts";
import type { Engine } from "./engine/engine.ts";
import { BatchEngine } from "./engine/batch-engine.ts";
import { errorFields, log } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { defaultDevice, mlxVersion } from "./mlx/index.ts";
import { loadModel } from "./models/load.ts";
import { ModelResolver } from "./api/model-aliases.ts";
import { createApp } from "./server.ts";
import { Drain, exitGracefullyOnSignals } from "./shutdown.ts";
import { warmUp } from "./warm-up.ts";

// Exits 2 with a message on a bad setting, including a non-loopback host without API keys.
const config = configOrExit();
const aliases = modelAliasSpec(config.modelAliases);
log.configure({ level: config.logLevel, prompts: config.logPrompts });
log.info("starting", { pid: process.pid, model: config.model, host: config.host, port: config.port, cacheDir: config.cacheDir });

const metrics = new Metrics();
let engine: Engine | null = null;
let pool: BlockPool | null = null;
metrics.watch(() => engine);
metrics.watchPool(() => pool?.stats() ?? null);
const drain = new Drain();

const app = createApp(
  { mlxVersion: mlxVersion(), device: defaultDevice(), startedAt: Date.now(), engine: () => engine, pool: () => pool, metrics, drain },
  {
    bindHost: config.host,
    apiKeys: config.apiKeys,
    modelAliases: aliases,
    allowedHosts: config.allowedHosts,
    allowedOrigins: config.allowedOrigins,
    bodyLimitBytes: config.bodyLimitBytes,
  },
).listen({
  hostname: config.host,
  port: config.port,
  // Bun's own limit answers an empty 413; ours (in the body parser) answers in the API's shape,
  // so Bun's is set far above it and never reached first.
  maxRequestBodySize: Math.max(config.bodyLimitBytes * 16, 1 << 30),
});

// From here on a signal drains: no new requests, in-flight ones get the grace period, then the
// pool's writes are flushed and the process exits 0 (also while the model still loads).
exitGracefullyOnSignals({ drain, server: app.server, flush: async () => await pool?.flush(), graceMs: config.shutdownGraceMs });

try {
  const loaded = await loadModel(config.model, { weights: config.weights });
  new ModelResolver(loaded.id, aliases); // a target naming another model fails here, before serving
  warmUp(loaded);
  pool = await BlockPool.open({
    dir: config.cacheDir,
    tag: loaded.tag,
    spec: loaded.model.cacheSpec,
    blockTokens: config.blockTokens,
    memoryBudget: config.memoryBudgetBytes,
    diskBudget: config.diskBudgetBytes,
  });
  // THE engine: continuous batching over the block pool, one scheduler loop for every function.
  engine = metrics.meter(
    new BatchEngine(loaded, {
      pool,
      maxBatch: config.maxBatch,
      maxQueued: config.maxQueued,
      maxQueuedTokens: config.maxQueuedTokens,
      prefillChunk: config.prefillChunk,
      agentWaitMs: config.agentWaitMs,
    }),
  );
} catch (e) {
  log.error(`cannot load model ${config.model}: ${(e as Error).message}`, { error: errorFields(e) });
  app.stop();
  process.exit(1);
}

const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${app.server?.port}`;
console.log(`semantic ready on ${url}`);
log.info("ready", { url, model: engine?.loaded.id, mlx: mlxVersion(), device: defaultDevice() });

// A safety net, not the mechanism: every request error is rendered by onError; a rejection that
// escapes anyway is logged, and the server keeps serving.
process.on("unhandledRejection", (e) => log.error("unhandled rejection", { error: errorFields(e) }));
