// Composition: every function's plugin on one Elysia app, behind the Host check, auth and an
// explicit body limit, with ONE onError that renders every failure in the caller's API shape.
// Functions stay thin; this file is the one place that knows them all.
import { Elysia, ValidationError } from "elysia";
import { agents } from "../functions/agents.ts";
import { chatCompletions } from "../functions/chat-completions.ts";
import { completions } from "../functions/completions.ts";
import { countTokens } from "../functions/count-tokens.ts";
import { health, type HealthService } from "../functions/health.ts";
import { messages } from "../functions/messages.ts";
import { metrics } from "../functions/metrics.ts";
import { models } from "../functions/models.ts";
import { openapi } from "../functions/openapi.ts";
import { ready } from "../functions/ready.ts";
import { agentIdOf, Auth, HostGuard, type Principal } from "./api/auth.ts";
import { DEFAULT_BODY_LIMIT, parseJsonBody, readBody } from "./api/body.ts";
import { ApiError, errorResponse, flavorOf, toApiError } from "./api/errors.ts";
import { DEFAULT_ALIASES, ModelResolver } from "./api/model-aliases.ts";
import { openApiDocument, type RouteInfo } from "./api/openapi.ts";
import type { Call, InferenceService, Served } from "./api/service.ts";
import { explainValidation } from "./api/validation.ts";
import type { BlockPool } from "./cache/index.ts";
import type { Engine } from "./engine/engine.ts";
import { errorFields, log } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { onBodyEnd, RequestRecord } from "./request-log.ts";
import { Drain, shuttingDown } from "./shutdown.ts";

export type ServerConfig = {
  /** The address the server binds (decides how strict the Host check is). */
  bindHost: string;
  apiKeys: readonly string[];
  /** SEMANTIC_MODEL_ALIASES. */
  modelAliases?: string;
  /** Extra Host names accepted (SEMANTIC_ALLOWED_HOSTS). */
  allowedHosts?: readonly string[];
  /** Browser origins accepted besides loopback ones (SEMANTIC_ALLOWED_ORIGINS). */
  allowedOrigins?: readonly string[];
  bodyLimitBytes?: number;
  /** SSE keep-alive after this much silence (ms); default 5000, well under Claude Code's 300 s. */
  keepAliveMs?: number;
};

export type Services = HealthService & {
  /** The running engine, or null while the model loads. */
  engine(): Engine | null;
  /** The block pool's agent records, or null without a pool. */
  pool(): BlockPool | null;
  metrics: Metrics;
  /** Tracks generations for graceful shutdown; while it drains, new requests get a 503. */
  drain?: Drain;
};

// Reachable without a key: probes only.
const PUBLIC_PATHS = new Set(["/health", "/ready"]);
// Still answered while the server drains: probes (/ready then says 503) and the scrape.
const OPEN_WHILE_DRAINING = new Set(["/health", "/ready", "/metrics"]);

const version = "0.1.0";

export function createApp(services: Services, config: ServerConfig) {
  const auth = new Auth(config.apiKeys);
  const guard = new HostGuard(config.bindHost, config.allowedHosts, config.allowedOrigins);
  const bodyLimit = config.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const keepAliveMs = config.keepAliveMs ?? 5000;
  const drain = services.drain ?? new Drain();
  const principals = new WeakMap<Request, Principal>();
  // Each request's id, clock, identity, turn counts and status, from arrival to its log line.
  const records = new WeakMap<Request, RequestRecord>();
  const recordOf = (r: Request) => {
    let rec = records.get(r);
    if (!rec) records.set(r, (rec = new RequestRecord()));
    return rec;
  };

  let served: (Served & { raw: Engine }) | null = null;
  const inference: InferenceService = {
    served() {
      const engine = services.engine();
      if (!engine) throw new ApiError("unavailable", "the model is still loading; retry shortly", { retryAfterSeconds: 2 });
      if (served?.raw !== engine) {
        const m = engine.loaded;
        served = {
          raw: engine,
          engine: drain.track(engine),
          model: { id: m.id, tokenizer: m.tokenizer, chatTemplate: m.chatTemplate, contextLength: m.model.contextLength },
          aliases: new ModelResolver(m.id, config.modelAliases ?? DEFAULT_ALIASES),
        };
      }
      return served;
    },
    call(request, user, userField, agentId): Call {
      const principal = principals.get(request) ?? auth.authenticate(request.headers);
      const rec = recordOf(request);
      rec.tenant = principal.tenant;
      rec.agentId = agentId !== undefined ? agentId : agentIdOf(request.headers, user, userField);
      return { tenant: principal.tenant, agentId: rec.agentId, signal: request.signal, requestId: rec.id, keepAliveMs, observe: rec.observe };
    },
    fingerprint() {
      const tag = services.engine()?.loaded.tag ?? "";
      return `fp_${new Bun.CryptoHasher("sha256").update(tag).digest("hex").slice(0, 10)}`;
    },
  };

  let document: Record<string, unknown> | null = null;
  let routes: () => readonly RouteInfo[] = () => [];
  const app = new Elysia({ name: "semantic", precompile: true })
    .onRequest(({ request, server }) => {
      const rec = recordOf(request); // starts its clock
      guard.check(request.headers);
      const path = new URL(request.url).pathname;
      if (!PUBLIC_PATHS.has(path)) {
        const principal = auth.authenticate(request.headers);
        principals.set(request, principal);
        rec.tenant = principal.tenant;
      }
      // Generations may wait in the queue or prefill for long: no idle timeout for them.
      if (request.method === "POST") server?.timeout(request, 0);
    })
    // Refused once matched to a function, so the 503 is counted and logged under its name.
    .onTransform(({ route }) => {
      if (drain.draining && !OPEN_WHILE_DRAINING.has(route)) throw shuttingDown();
    })
    // Only POST routes take a body; a DELETE has none to parse.
    .onParse(async ({ request }) => (request.method === "POST" ? parseJsonBody(await readBody(request, bodyLimit)) : {}))
    .onError(({ error, code, request }) => {
      const path = new URL(request.url).pathname;
      const rec = recordOf(request);
      let e: ApiError;
      if (error instanceof ValidationError) {
        const validator = error.validator as { schema?: unknown } | undefined;
        e = explainValidation((validator?.schema ?? validator) as never, error.value, error.type === "body" ? "body" : error.type);
      } else if (code === "PARSE") {
        const cause = (error as Error).cause;
        e = cause instanceof ApiError ? cause : new ApiError("invalid_request", "body: could not be parsed as JSON", { param: "body" });
      } else if (code === "NOT_FOUND") {
        e = new ApiError("not_found", `no route for ${request.method} ${path}`);
      } else {
        e = toApiError(error);
        if (e.kind === "internal") log.error("request failed", { requestId: rec.id, method: request.method, path, error: errorFields(error) });
      }
      const response = errorResponse(e, flavorOf(path, request.headers), rec.id);
      rec.status = response.status;
      rec.error = e.kind;
      return response;
    })
    // A stream's request lasts until its body is sent (or the client leaves), not until its headers.
    .mapResponse(({ request, route, body, responseValue }) => {
      if (!(responseValue instanceof Response) || !responseValue.body || !responseValue.headers.get("content-type")?.startsWith("text/event-stream")) return;
      const rec = recordOf(request);
      rec.streaming = true;
      return onBodyEnd(responseValue, (how) => {
        rec.clientClosed = how === "cancelled";
        rec.end(services.metrics, route || "unmatched", request.method, body);
      });
    })
    .onAfterResponse(({ request, route, set, body, responseValue }) => {
      const rec = records.get(request);
      if (!rec || rec.streaming) return;
      if (!rec.error) rec.status = responseValue instanceof Response ? responseValue.status : typeof set.status === "number" ? set.status : 200;
      rec.end(services.metrics, route || "unmatched", request.method, body);
    })
    .use(health(services))
    .use(
      ready({
        readiness: () => {
          const engine = services.engine();
          return { ready: engine !== null && !drain.draining, model: engine?.loaded.id ?? null };
        },
      }),
    )
    .use(metrics({ metricsText: () => services.metrics.text(), metricsContentType: services.metrics.contentType }))
    .use(openapi({ openapi: () => (document ??= openApiDocument(routes(), { title: "Semantic", version })) }))
    .use(models({ ...inference, startedAt: services.startedAt }))
    .use(messages(inference))
    .use(countTokens(inference))
    .use(chatCompletions(inference))
    .use(completions(inference))
    .use(agents({ ...inference, agents: () => {
      const pool = services.pool();
      if (!pool) throw new ApiError("unavailable", "the agent cache is not running (the model is still loading)", { retryAfterSeconds: 2 });
      return { list: (t) => pool.listAgents(t), get: (t, id) => pool.getAgent(t, id), delete: (t, id) => pool.deleteAgent(t, id) };
    } }));
  routes = () => app.routes as unknown as RouteInfo[];
  return app;
}

/** The app's type, for Eden Treaty users: `treaty<App>("http://127.0.0.1:8080")`. */
export type App = ReturnType<typeof createApp>;
