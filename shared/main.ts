// The long-lived server process: loads MLX, serves the functions, prints one line when ready.
import { createApp } from "./server.ts";
import { defaultDevice, mlxVersion } from "./mlx/index.ts";

const host = process.env.SEMANTIC_HOST ?? "127.0.0.1";
const port = Number(process.env.SEMANTIC_PORT ?? 8080);
const loopback = host === "127.0.0.1" || host === "::1" || host === "localhost";

if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`SEMANTIC_PORT must be an integer 0..65535, got ${process.env.SEMANTIC_PORT}`);
  process.exit(2);
}
if (!loopback && !process.env.SEMANTIC_API_KEYS) {
  console.error(`refusing to bind ${host} without API keys: set SEMANTIC_API_KEYS or bind 127.0.0.1`);
  process.exit(2);
}

const startedAt = Date.now();
const app = createApp({
  mlxVersion: mlxVersion(),
  device: defaultDevice(),
  startedAt,
  readiness: () => ({ ready: true, model: null }),
}).listen({ hostname: host, port });

const url = `http://${host.includes(":") ? `[${host}]` : host}:${app.server?.port}`;
console.log(`semantic ready on ${url}`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    app.stop();
    process.exit(0);
  });
}
