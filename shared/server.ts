// Composition: every function's plugin on one Elysia app. Functions stay thin; this file
// is the one place that knows them all.
import { Elysia } from "elysia";
import { health, type HealthService } from "../functions/health.ts";
import { ready, type ReadinessService } from "../functions/ready.ts";

export type Services = HealthService & ReadinessService;

export function createApp(services: Services) {
  return new Elysia().use(health(services)).use(ready(services));
}

export type App = ReturnType<typeof createApp>;
