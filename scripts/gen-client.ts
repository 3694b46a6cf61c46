// bun run gen:client — writes client/semantic-client.ts, a typed TypeScript client generated from
// the OpenAPI document the server serves (GET /openapi.json, itself built from the routes'
// TypeBox schemas). The output is CHECKED IN; tests/functions/serving.test.ts regenerates it in
// memory and fails when the checked-in file is stale, and uses it against the real server.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Metrics } from "../shared/metrics.ts";
import { repoRoot } from "../shared/paths.ts";
import { createApp } from "../shared/server.ts";

type Schema = Record<string, any>;

export const CLIENT_PATH = join(repoRoot, "client", "semantic-client.ts");

/** The OpenAPI document, from an app with no model loaded (the document does not need one). */
export async function openApiFromApp(): Promise<Schema> {
  const app = createApp(
    { mlxVersion: "", device: "cpu", startedAt: 0, engine: () => null, pool: () => null, metrics: new Metrics() },
    { bindHost: "127.0.0.1", apiKeys: [] },
  );
  const r = await app.handle(new Request("http://127.0.0.1/openapi.json", { headers: { host: "127.0.0.1" } }));
  if (!r.ok) throw new Error(`GET /openapi.json answered ${r.status}`);
  return (await r.json()) as Schema;
}

const ident = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const key = (k: string) => (ident.test(k) ? k : JSON.stringify(k));

/** A JSON Schema (as TypeBox emits it) as a TypeScript type expression. */
export function tsType(s: Schema | undefined, indent = ""): string {
  if (!s || Object.keys(s).length === 0 || (Object.keys(s).length === 1 && s.description)) return "unknown";
  if ("const" in s) return JSON.stringify(s.const);
  if (s.anyOf) return [...new Set((s.anyOf as Schema[]).map((x) => tsType(x, indent)))].join(" | ");
  switch (s.type) {
    case "string":
      return "string";
    case "number":
    case "integer":
      return "number";
    case "boolean":
      return "boolean";
    case "null":
      return "null";
    case "array": {
      const item = tsType(s.items, indent);
      return /[|&]/.test(item) ? `(${item})[]` : `${item}[]`;
    }
    case "object": {
      const props = Object.entries((s.properties ?? {}) as Record<string, Schema>);
      const required = new Set<string>(s.required ?? []);
      const pattern = s.patternProperties ? Object.values(s.patternProperties as Record<string, Schema>)[0] : undefined;
      if (!props.length) return pattern ? `Record<string, ${tsType(pattern, indent)}>` : "Record<string, unknown>";
      const inner = `${indent}  `;
      const lines = props.map(([k, v]) => {
        const doc = v.description ? `${inner}/** ${String(v.description).replace(/\*\//g, "* /")} */\n` : "";
        return `${doc}${inner}${key(k)}${required.has(k) ? "" : "?"}: ${tsType(v, inner)};`;
      });
      return `{\n${lines.join("\n")}\n${indent}}`;
    }
    default:
      return "unknown";
  }
}

const pascal = (s: string) => s[0].toUpperCase() + s.slice(1);

/** The client module's source for an OpenAPI document. */
export function generateClient(doc: Schema): string {
  const types: string[] = [];
  const methods: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, Schema>>)) {
    for (const [method, op] of Object.entries(ops)) {
      const name = op.operationId as string;
      const T = pascal(name);
      const pathParams = ((op.parameters ?? []) as Schema[]).filter((p) => p.in === "path");
      const query = ((op.parameters ?? []) as Schema[]).filter((p) => p.in === "query");
      const headers = ((op.parameters ?? []) as Schema[]).filter((p) => p.in === "header");
      const body = op.requestBody?.content?.["application/json"]?.schema;
      const ok = op.responses?.["200"]?.content;
      const okSchema = ok?.["application/json"]?.schema ?? ok?.["text/plain"]?.schema;
      const isText = !ok?.["application/json"] && !!ok?.["text/plain"];
      const streams = !!ok?.["text/event-stream"] && !!body;
      if (body) types.push(`/** Request body of ${method.toUpperCase()} ${path}. */\nexport type ${T}Body = ${tsType(body)};`);
      types.push(`/** 200 response of ${method.toUpperCase()} ${path}. */\nexport type ${T}Response = ${tsType(okSchema)};`);
      if (query.length) types.push(`export type ${T}Query = ${tsType({ type: "object", properties: Object.fromEntries(query.map((q) => [q.name, q.schema])) })};`);
      if (headers.length) types.push(`export type ${T}Headers = ${tsType({ type: "object", properties: Object.fromEntries(headers.map((h) => [h.name, h.schema])) })};`);
      const args = [
        ...pathParams.map((p) => `${p.name}: string`),
        ...(body ? [`body: ${T}Body`] : []),
        ...(query.length ? [`query?: ${T}Query`] : []),
        `headers?: ${headers.length ? `${T}Headers` : "Record<string, string>"}`,
      ];
      let url = JSON.stringify(path);
      for (const p of pathParams) url = `${url}.replace("{${p.name}}", encodePath(${p.name}))`;
      const doc = [op.summary, op.description].filter(Boolean).join(" — ");
      methods.push(
        `  /** ${method.toUpperCase()} ${path}${doc ? `: ${doc}` : ""} */\n` +
          `  ${name}(${args.join(", ")}): Promise<${T}Response> {\n` +
          `    return this.request(${JSON.stringify(method.toUpperCase())}, ${url}${query.length ? " + queryString(query)" : ""}, ${body ? "body" : "undefined"}, headers as Record<string, string> | undefined, ${isText});\n` +
          "  }",
      );
      // Routes that can stream get a second method: the same call with stream: true, as parsed events.
      if (streams) {
        methods.push(
          `  /** ${method.toUpperCase()} ${path} with stream: true: the server-sent events, parsed (an error event throws SemanticApiError). */\n` +
            `  ${name}Stream(${[...args, "signal?: AbortSignal"].join(", ")}): AsyncGenerator<SemanticEvent> {\n` +
            `    return this.events(${JSON.stringify(method.toUpperCase())}, ${url}${query.length ? " + queryString(query)" : ""}, { ...body, stream: true }, headers as Record<string, string> | undefined, signal);\n` +
            "  }",
        );
      }
    }
  }
  return `${HEADER}
${types.join("\n\n")}

${RUNTIME}
${methods.join("\n\n")}
}
`;
}

const HEADER = `// GENERATED by scripts/gen-client.ts (bun run gen:client) from the server's OpenAPI document,
// which is built from the routes' TypeBox schemas. Do not edit by hand. This file is checked in;
// tests/functions/serving.test.ts fails when it no longer matches a fresh generation.
/* eslint-disable */`;

const RUNTIME = `/** A non-2xx answer, or an error event after a stream began (status 200): the status and the API's error body. */
export class SemanticApiError extends Error {
  constructor(readonly status: number, readonly body: unknown) {
    super(\`HTTP \${status}: \${JSON.stringify(body)}\`);
  }
}

/** One server-sent event: its name (Anthropic's \`event:\`; null for OpenAI's data-only frames) and its data as JSON ("[DONE]" stays a string). */
export type SemanticEvent = { event: string | null; data: unknown };

export type SemanticClientOptions = {
  /** Sent as x-api-key (the server also accepts Authorization: Bearer). */
  apiKey?: string;
  headers?: Record<string, string>;
  fetch?: typeof fetch;
};

const encodePath = (s: string) => encodeURIComponent(s).replace(/%2F/g, "/");

function queryString(q: Record<string, unknown> | undefined): string {
  const entries = Object.entries(q ?? {}).filter(([, v]) => v !== undefined);
  return entries.length ? \`?\${new URLSearchParams(entries.map(([k, v]): [string, string] => [k, String(v)]))}\` : "";
}

/**
 * A typed client for every route. Streaming routes are typed for their JSON (stream: false)
 * answer, and have a \`…Stream\` twin that yields their server-sent events.
 * @example await new SemanticClient("http://127.0.0.1:8080").getV1Models()
 */
export class SemanticClient {
  constructor(readonly baseUrl: string, readonly options: SemanticClientOptions = {}) {}

  /** The raw Response of any call (e.g. stream: true), after the same headers. */
  raw(method: string, path: string, body?: unknown, headers?: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const h: Record<string, string> = { ...this.options.headers, ...headers };
    if (this.options.apiKey) h["x-api-key"] = this.options.apiKey;
    if (body !== undefined) h["content-type"] = "application/json";
    return (this.options.fetch ?? fetch)(this.baseUrl.replace(/\\/$/, "") + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal });
  }

  /** The events of a streamed call. Leaving the loop early closes the stream (the server then cancels the generation). */
  protected async *events(method: string, path: string, body: unknown, headers: Record<string, string> | undefined, signal?: AbortSignal): AsyncGenerator<SemanticEvent> {
    const r = await this.raw(method, path, body, headers, signal);
    if (!r.ok) throw new SemanticApiError(r.status, await r.json().catch(() => null));
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        for (let end = buffer.indexOf("\\n\\n"); end >= 0; end = buffer.indexOf("\\n\\n")) {
          const lines = buffer.slice(0, end).split("\\n");
          buffer = buffer.slice(end + 2);
          const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, ""));
          if (!data.length) continue; // a comment: keep-alive
          const text = data.join("\\n");
          const event = lines.find((l) => l.startsWith("event:"))?.slice(6).trim() ?? null;
          const parsed: unknown = text === "[DONE]" ? text : JSON.parse(text);
          if (event === "error" || (typeof parsed === "object" && parsed !== null && "error" in parsed)) throw new SemanticApiError(r.status, parsed);
          yield { event, data: parsed };
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  protected async request<T>(method: string, path: string, body: unknown, headers: Record<string, string> | undefined, text: boolean): Promise<T> {
    const r = await this.raw(method, path, body, headers);
    const payload = text ? await r.text() : await r.json().catch(() => null);
    if (!r.ok) throw new SemanticApiError(r.status, payload);
    return payload as T;
  }
`;

if (import.meta.main) {
  const source = generateClient(await openApiFromApp());
  writeFileSync(CLIENT_PATH, source);
  console.log(`wrote ${CLIENT_PATH} (${source.length} bytes)`);
}
