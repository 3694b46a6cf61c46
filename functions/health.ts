// GET /health: the process is alive, with the MLX version and device it runs on.
import { Elysia, t } from "elysia";

export const HealthResponse = t.Object({
  status: t.Literal("ok"),
  mlx: t.String({ description: "Linked MLX version" }),
  device: t.Union([t.Literal("gpu"), t.Literal("cpu")]),
  uptime_s: t.Number(),
});
export type HealthResponse = typeof HealthResponse.static;

export type HealthService = { mlxVersion: string; device: "gpu" | "cpu"; startedAt: number };

export const health = (s: HealthService) =>
  new Elysia({ name: "function.health" }).get(
    "/health",
    (): HealthResponse => ({ status: "ok", mlx: s.mlxVersion, device: s.device, uptime_s: (Date.now() - s.startedAt) / 1000 }),
    { response: { 200: HealthResponse }, detail: { summary: "Liveness", tags: ["operations"] } },
  );
