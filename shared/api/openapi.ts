// The OpenAPI 3.1 document, built from the routes' own TypeBox schemas (3.1 takes JSON Schema
// as is), so the document, the validation and the generated client cannot drift apart.

type Schema = Record<string, unknown>;

/** The part of an Elysia route this reads (app.routes). */
export type RouteInfo = {
  method: string;
  path: string;
  hooks: { body?: unknown; headers?: unknown; query?: unknown; params?: unknown; response?: unknown; detail?: Record<string, unknown> };
};

const AUTH_HEADERS = new Set(["authorization", "x-api-key"]);
const STREAMING = new Set(["/v1/messages", "/v1/chat/completions", "/v1/completions", "/v1/agents/:agent_id/chat/completions"]);
const PUBLIC = new Set(["/health", "/ready"]);

/** A JSON copy without TypeBox's symbol keys; request bodies lose additionalProperties: false (extras are dropped, not refused). */
function clean(schema: unknown, request = false): Schema {
  return JSON.parse(JSON.stringify(schema), (key, value) => (request && key === "additionalProperties" && value === false ? undefined : value));
}

/** "/v1/models/*" -> "/v1/models/{id}", ":name" -> "{name}". */
export function openApiPath(path: string): string {
  return path.replace(/:(\w+)/g, "{$1}").replace(/\*$/, "{id}");
}

function parameters(where: "path" | "query" | "header", schema: unknown): Schema[] {
  if (!schema) return [];
  const s = clean(schema);
  const props = (s.properties ?? {}) as Record<string, Schema>;
  const required = new Set((s.required as string[] | undefined) ?? []);
  return Object.entries(props)
    .filter(([name]) => !(where === "header" && AUTH_HEADERS.has(name)))
    .map(([name, p]) => ({
      name,
      in: where,
      required: where === "path" || required.has(name),
      ...(p.description ? { description: p.description } : {}),
      schema: p,
    }));
}

function responses(path: string, response: unknown): Schema {
  const byStatus: Record<string, unknown> =
    response && typeof response === "object" && !("type" in response || "anyOf" in response) ? (response as Record<string, unknown>) : { 200: response };
  const out: Schema = {};
  for (const [status, schema] of Object.entries(byStatus)) {
    if (!schema) continue;
    const s = clean(schema);
    const content: Schema = status === "200" && path === "/metrics" ? { "text/plain": { schema: s } } : { "application/json": { schema: s } };
    if (status === "200" && STREAMING.has(path)) content["text/event-stream"] = { schema: { type: "string", description: "Server-sent events (stream: true)" } };
    out[status] = { description: status === "200" ? "OK" : "Error", content };
  }
  return out;
}

/**
 * The document for a set of routes.
 * @example openApiDocument(app.routes, { title: "Semantic", version: "0.1.0" }).paths["/v1/messages"]
 */
export function openApiDocument(routes: readonly RouteInfo[], info: { title: string; version: string; description?: string }): Schema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const method = r.method.toLowerCase();
    if (!["get", "post", "put", "delete", "patch"].includes(method)) continue;
    const h = r.hooks;
    const op: Schema = {
      operationId: operationId(r.method, r.path),
      ...(h.detail?.summary ? { summary: h.detail.summary } : {}),
      ...(h.detail?.description ? { description: h.detail.description } : {}),
      ...(h.detail?.tags ? { tags: h.detail.tags } : {}),
      parameters: [
        ...(r.path.endsWith("*") ? [{ name: "id", in: "path", required: true, description: "May contain /", schema: { type: "string", minLength: 1, maxLength: 256 } }] : []),
        ...parameters("path", h.params),
        ...parameters("query", h.query),
        ...parameters("header", h.headers),
      ],
      ...(h.body ? { requestBody: { required: true, content: { "application/json": { schema: clean(h.body, true) } } } } : {}),
      responses: responses(r.path, h.response),
      ...(PUBLIC.has(r.path) ? { security: [] } : {}),
    };
    (paths[openApiPath(r.path)] ??= {})[method] = op;
  }
  return {
    openapi: "3.1.0",
    info,
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: "apiKey", in: "header", name: "x-api-key" },
        bearer: { type: "http", scheme: "bearer" },
      },
    },
    // Keys are optional (none configured: tenant "local"); either scheme works when they are.
    security: [{}, { apiKey: [] }, { bearer: [] }],
  };
}

/** "POST /v1/messages/count_tokens" -> "postV1MessagesCountTokens". */
export function operationId(method: string, path: string): string {
  const words = openApiPath(path).replace(/[{}]/g, "").split(/[^A-Za-z0-9]+/).filter(Boolean);
  return method.toLowerCase() + words.map((w) => w[0].toUpperCase() + w.slice(1)).join("");
}
