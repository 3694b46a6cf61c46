// GET /metrics: Prometheus text exposition (requests and latency per function, TTFT, tokens,
// decode speed, queue depth).
import { Elysia, t } from "elysia";

export const MetricsResponse = t.String({ description: "Prometheus text format 0.0.4" });

export type MetricsService = { metricsText(): Promise<string>; metricsContentType: string };

export const metrics = (s: MetricsService) =>
  new Elysia({ name: "function.metrics" }).get(
    "/metrics",
    async () => new Response(await s.metricsText(), { headers: { "content-type": s.metricsContentType } }),
    { response: { 200: MetricsResponse }, detail: { summary: "Prometheus metrics", tags: ["operations"] } },
  );
