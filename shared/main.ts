// The long-lived server process: reads the settings (flags > environment > config file >
// defaults, shared/config.ts), listens, loads the model, opens the block pool, starts the engine
// and prints one line when ready: "semantic ready on URL". /ready answers 503 until the engine is
// set (during a hub download, which is async; a local load is one synchronous MLX call).
import { BlockPool } from "./cache/index.ts";
import { configOrExit, modelAliasSpec } from "./config.ts";
import type { Engine } from "./engine/engine.ts";
import { BatchEngine } from "./engine/batch-engine.ts";
import { Metrics } from "./metrics.ts";
import { defaultDevice, mlxVersion } from "./mlx/index.ts";
import { loadModel } from "./models/load.ts";
import { ModelResolver } from "./api/model-aliases.ts";
import { createApp } from "./server.ts";

// Exits 2 with a message on a bad setting, including a non-loopback host without API keys.
const config = configOrExit();
const aliases = modelAliasSpec(config.modelAliases);

const metrics = new Metrics();
let engine: Engine | null = null;
let pool: BlockPool | null = null;
metrics.watch(() => engine);
metrics.watchPool(() => pool?.stats() ?? null);

const app = createApp(
  { mlxVersion: mlxVersion(), device: defaultDevice(), startedAt: Date.now(), engine: () => engine, pool: () => pool, metrics },
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

try {
  const loaded = await loadModel(config.model, { weights: config.weights });
  new ModelResolver(loaded.id, aliases); // a target naming another model fails here, before serving
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
  console.error(`cannot load model ${config.model}: ${(e as Error).message}`);
  app.stop();
  process.exit(1);
}

const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${app.server?.port}`;
console.log(`semantic ready on ${url}`);

// A safety net, not the mechanism: every request error is rendered by onError; a rejection that
// escapes anyway is logged, and the server keeps serving.
process.on("unhandledRejection", (e) => console.error(`unhandled rejection: ${(e as Error)?.stack ?? e}`));

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    app.stop();
    // Cache writes in flight finish (each is atomic), bounded by the grace period.
    await Promise.race([pool?.flush(), Bun.sleep(config.shutdownGraceMs)]).catch(() => {});
    process.exit(0);
  });
}
