// GET /openapi.json: the OpenAPI 3.1 document, generated from the same TypeBox schemas the
// routes validate with (shared/api/openapi.ts); scripts/gen-client.ts builds the typed client from it.
import { Elysia, t } from "elysia";

export const OpenApiDocument = t.Record(t.String(), t.Unknown(), { description: "OpenAPI 3.1 document" });
export type OpenApiDocument = typeof OpenApiDocument.static;

export type OpenApiService = { openapi(): OpenApiDocument };

export const openapi = (s: OpenApiService) =>
  new Elysia({ name: "function.openapi" }).get("/openapi.json", () => s.openapi(), {
    response: { 200: OpenApiDocument },
    detail: { summary: "This API's OpenAPI document", tags: ["operations"] },
  });
