// Keys and tenants, the Host/Origin guard, agent ids, model aliases and the error map, as units.
import { describe, expect, test } from "bun:test";
import { agentIdOf, Auth, checkAgentId, HostGuard, LOCAL_TENANT, parseKeys } from "../../shared/api/auth.ts";
import { ApiError, errorResponse, toApiError } from "../../shared/api/errors.ts";
import { ModelAliasError, ModelResolver } from "../../shared/api/model-aliases.ts";
import { ContextLengthError, QueueFullError } from "../../shared/engine/engine.ts";

const h = (o: Record<string, string>) => new Headers(o);

describe("Auth", () => {
  test("no keys: everyone is the local tenant", () => {
    expect(new Auth([]).authenticate(h({})).tenant).toBe(LOCAL_TENANT);
  });

  test("keys from the environment: comma-separated, blanks dropped", () => {
    expect(parseKeys(" a, ,b ,")).toEqual(["a", "b"]);
    expect(parseKeys(undefined)).toEqual([]);
  });

  test("x-api-key or Bearer; the tenant is a stable hash, never the key", () => {
    const a = new Auth(["alpha", "beta"]);
    const t = a.authenticate(h({ "x-api-key": "alpha" })).tenant;
    expect(a.authenticate(h({ authorization: "Bearer alpha" })).tenant).toBe(t);
    expect(a.authenticate(h({ authorization: "bearer   alpha" })).tenant).toBe(t);
    expect(new Auth(["beta", "alpha"]).authenticate(h({ "x-api-key": "alpha" })).tenant).toBe(t);
    expect(a.authenticate(h({ "x-api-key": "beta" })).tenant).not.toBe(t);
    expect(t).not.toContain("alpha");
  });

  test("missing, wrong, prefix and longer keys are refused with 401", () => {
    const a = new Auth(["alpha"]);
    for (const headers of <Record<string, string>[]>[{}, { "x-api-key": "alph" }, { "x-api-key": "alphaa" }, { authorization: "Basic alpha" }, { "x-api-key": "" }]) {
      const e = (() => {
        try {
          a.authenticate(h(headers));
        } catch (e) {
          return e;
        }
      })() as ApiError;
      expect(e).toBeInstanceOf(ApiError);
      expect(e.status("anthropic")).toBe(401);
    }
  });
});

describe("HostGuard", () => {
  const refused = (g: HostGuard, headers: Record<string, string>) => {
    try {
      g.check(h(headers));
      return false;
    } catch (e) {
      return (e as ApiError).status("openai") === 403;
    }
  };

  test("bound to loopback: loopback names on any port pass, anything else is refused", () => {
    const g = new HostGuard("127.0.0.1");
    for (const host of ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:80", "127.0.0.2"]) expect(refused(g, { host })).toBe(false);
    for (const host of ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "", "[::2]:80"]) expect(refused(g, { host })).toBe(true);
    expect(refused(g, {})).toBe(true);
  });

  test("allowed hosts extend the list; bound elsewhere without a list any Host passes (keys are required then)", () => {
    expect(refused(new HostGuard("127.0.0.1", ["mac.local"]), { host: "mac.local:8080" })).toBe(false);
    expect(refused(new HostGuard("0.0.0.0"), { host: "192.168.1.5:8080" })).toBe(false);
    expect(refused(new HostGuard("0.0.0.0", ["mac.local"]), { host: "192.168.1.5:8080" })).toBe(true);
  });

  test("browser origins: loopback and allowed ones pass, others and 'null' are refused", () => {
    const g = new HostGuard("127.0.0.1", [], ["https://app.example"]);
    const host = "127.0.0.1:8080";
    expect(refused(g, { host, origin: "http://localhost:5173" })).toBe(false);
    expect(refused(g, { host, origin: "https://app.example" })).toBe(false);
    expect(refused(g, { host, origin: "https://evil.example" })).toBe(true);
    expect(refused(g, { host, origin: "null" })).toBe(true);
    expect(refused(g, { host, origin: "not a url" })).toBe(true);
  });
});

describe("agent ids", () => {
  test("a conservative charset and length", () => {
    for (const ok of ["abc", "0b7c1e9a-5d2f-4c1b-9f0e-1234567890ab", "user_1_account_2_session_3", "a@b.c", "x".repeat(256)]) expect(checkAgentId(ok, "f")).toBe(ok);
    for (const bad of ["..", "a/b", "a\\b", "a b", "%2e%2e%2f", "／etc", "é", "a\u0000", "x".repeat(257), "/abs"]) {
      expect(() => checkAgentId(bad, "f")).toThrow(ApiError);
    }
    expect(checkAgentId("", "f")).toBeNull();
    expect(checkAgentId(null, "f")).toBeNull();
  });

  test("header precedence over the body's user field", () => {
    expect(agentIdOf(h({ "x-claude-code-session-id": "a", "x-session-id": "b" }), "c", "user")).toBe("a");
    expect(agentIdOf(h({ "x-session-id": "b" }), "c", "user")).toBe("b");
    expect(agentIdOf(h({}), "c", "user")).toBe("c");
  });
});

describe("model aliases", () => {
  test("default: the served id and any claude-* id", () => {
    const r = new ModelResolver("smol");
    expect(r.matches("smol")).toBe(true);
    expect(r.matches("claude-opus-4-1-20250805")).toBe(true);
    expect(r.matches("gpt-4o")).toBe(false);
    expect(() => r.resolve("gpt-4o")).toThrow(ApiError);
  });

  test("configured patterns, with globs and the served id as target", () => {
    const r = new ModelResolver("smol", "gpt-4*=*, local=smol");
    expect(r.matches("gpt-4o-mini")).toBe(true);
    expect(r.matches("local")).toBe(true);
    expect(r.matches("claude-x")).toBe(false);
    expect(r.matches("gpt-3.5")).toBe(false);
    expect(() => new ModelResolver("smol", "x=other-model")).toThrow(ModelAliasError);
  });
});

describe("error map", () => {
  test("engine errors: queue full is 529 for Anthropic, 429 for OpenAI, with Retry-After", async () => {
    const e = toApiError(new QueueFullError("full", 2.5));
    const a = errorResponse(e, "anthropic", "req_1");
    const o = errorResponse(e, "openai", "req_1");
    expect([a.status, o.status]).toEqual([529, 429]);
    expect(a.headers.get("retry-after")).toBe("3");
    expect((await a.json()) as object).toEqual({ type: "error", error: { type: "overloaded_error", message: "overloaded: full" }, request_id: "req_1" });
    expect(((await o.json()) as any).error).toMatchObject({ type: "rate_limit_error", code: "queue_full" });
  });

  test("context overflow keeps Anthropic's wording; unknown errors are a 500 without details", async () => {
    const c = errorResponse(toApiError(new ContextLengthError(9000, 8192)), "openai", "r");
    expect(c.status).toBe(400);
    expect(((await c.json()) as any).error).toEqual({ message: "prompt is too long: 9000 tokens > 8192 maximum", type: "invalid_request_error", param: "messages", code: "context_length_exceeded" });
    const u = errorResponse(toApiError(new TypeError("secret internals")), "anthropic", "r");
    expect(u.status).toBe(500);
    expect(JSON.stringify(await u.json())).not.toContain("secret");
  });
});
