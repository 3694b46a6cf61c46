// The direct agent API: continue an agent's conversation by id (its KV cache is kept across calls
// and restarts), list the caller's agents, get one, delete one. Always within the caller's
// tenant: another tenant's agent is indistinguishable from one that does not exist (404).
import { Type } from "@sinclair/typebox";
import { Elysia, t } from "elysia";
import { checkAgentId } from "../shared/api/auth.ts";
import { ApiError } from "../shared/api/errors.ts";
import { createChatCompletion, streamChatCompletion } from "../shared/api/openai.ts";
import { ErrorResponse } from "../shared/api/openai-schema.ts";
import { refuseUnknownSamplers } from "../shared/api/sampling.ts";
import type { InferenceService } from "../shared/api/service.ts";
import type { AgentInfo } from "../shared/cache/index.ts";
import { ChatCompletionsBody, ChatCompletionsResponse } from "./chat-completions.ts";

export const Agent = t.Object({
  id: t.String(),
  object: t.Literal("agent"),
  cached_tokens: Type.Integer({ description: "Tokens of the conversation whose K/V the cache holds" }),
  cached_blocks: Type.Integer(),
  tier: t.Union([t.Literal("hot"), t.Literal("warm")], { description: "hot: in memory; warm: on disk, reloaded on use" }),
  last_used_at: t.String({ description: "RFC 3339" }),
  created_at: t.String({ description: "RFC 3339" }),
});
export type Agent = typeof Agent.static;

export const AgentList = t.Object({ object: t.Literal("list"), data: t.Array(Agent) });
export const AgentDeleted = t.Object({ id: t.String(), object: t.Literal("agent.deleted"), deleted: t.Literal(true) });
export const AgentParams = t.Object({ agent_id: t.String({ minLength: 1, maxLength: 256 }) });

/** What the composition gives this function: the pool's agent records, by tenant. */
export type AgentsService = InferenceService & {
  agents(): {
    list(tenant: string): AgentInfo[];
    get(tenant: string, agentId: string): AgentInfo | null;
    delete(tenant: string, agentId: string): Promise<boolean>;
  };
};

const render = (a: AgentInfo): Agent => ({
  id: a.agentId, object: "agent", cached_tokens: a.tokens, cached_blocks: a.cachedBlocks,
  tier: a.hot ? "hot" : "warm", last_used_at: a.lastUsed, created_at: a.createdAt,
});

const notFound = (id: string) => new ApiError("not_found", `agent "${id}" not found`, { param: "agent_id" });
const Errors = { 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 429: ErrorResponse, 503: ErrorResponse };

export const agents = (s: AgentsService) =>
  new Elysia({ name: "function.agents" })
    .get("/v1/agents", ({ request }) => ({ object: "list" as const, data: s.agents().list(s.call(request, null, "user").tenant).map(render) }), {
      response: { 200: AgentList, ...Errors },
      detail: { summary: "List the caller's agents", tags: ["agents"] },
    })
    .get(
      "/v1/agents/:agent_id",
      ({ request, params }) => {
        const id = checkAgentId(params.agent_id, "agent_id")!;
        const a = s.agents().get(s.call(request, null, "user").tenant, id);
        if (!a) throw notFound(id);
        return render(a);
      },
      { params: AgentParams, response: { 200: Agent, ...Errors }, detail: { summary: "Get an agent: tokens cached, tier, last use", tags: ["agents"] } },
    )
    .delete(
      "/v1/agents/:agent_id",
      async ({ request, params }) => {
        const id = checkAgentId(params.agent_id, "agent_id")!;
        if (!(await s.agents().delete(s.call(request, null, "user").tenant, id))) throw notFound(id);
        return { id, object: "agent.deleted" as const, deleted: true as const };
      },
      { params: AgentParams, response: { 200: AgentDeleted, ...Errors }, detail: { summary: "Delete an agent and its private cache", tags: ["agents"] } },
    )
    .post(
      "/v1/agents/:agent_id/chat/completions",
      async ({ request, params, body }) => {
        const served = s.served();
        // The path names the agent; headers and the user field do not override it.
        const call = s.call(request, null, "user", checkAgentId(params.agent_id, "agent_id"));
        if (body.stream) return (await streamChatCompletion(served, body, call, s.fingerprint())) as unknown as ChatCompletionsResponse;
        return await createChatCompletion(served, body, call, s.fingerprint());
      },
      {
        params: AgentParams,
        transform: ({ body }) => refuseUnknownSamplers(body),
        body: ChatCompletionsBody,
        response: { 200: ChatCompletionsResponse, ...Errors },
        detail: {
          summary: "Continue an agent's conversation (OpenAI chat body); its cache is reused by prefix",
          description: "Send the whole conversation each turn, as with /v1/chat/completions: the agent's cached prefix is matched and only new tokens are prefilled.",
          tags: ["agents"],
        },
      },
    );
