// GET /ready: 200 only once the model is loaded and the engine runs; 503 before.
import { Elysia, t } from "elysia";

export const ReadyResponse = t.Object({
  ready: t.Boolean(),
  model: t.Union([t.String(), t.Null()]),
});
export type ReadyResponse = typeof ReadyResponse.static;

export type ReadinessService = { readiness(): { ready: boolean; model: string | null } };

export const ready = (s: ReadinessService) =>
  new Elysia({ name: "function.ready" }).get(
    "/ready",
    ({ status }) => {
      const r = s.readiness();
      return r.ready ? status(200, r) : status(503, r);
    },
    { response: { 200: ReadyResponse, 503: ReadyResponse }, detail: { summary: "Readiness", tags: ["operations"] } },
  );
