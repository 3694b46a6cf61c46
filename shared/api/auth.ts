// Who is calling and from where: API keys (each key a tenant), the Host check against DNS
// rebinding, browser Origin refusal, and agent ids taken from headers or the body's user field.
import { createHash, timingSafeEqual } from "node:crypto";
import { ApiError } from "./errors.ts";

/** The authenticated caller. `tenant` is derived here, never read from the request. */
export type Principal = { tenant: string };

/** Tenant of every caller when no keys are configured. */
export const LOCAL_TENANT = "local";

const digest = (s: string) => createHash("sha256").update(s).digest();

/** SEMANTIC_API_KEYS: comma-separated, blanks dropped. */
export function parseKeys(spec: string | undefined): string[] {
  return (spec ?? "").split(",").map((k) => k.trim()).filter(Boolean);
}

export class Auth {
  readonly #keys: { hash: Buffer; tenant: string }[];

  constructor(keys: readonly string[]) {
    // The tenant id is a hash of the key: stable across restarts (caches on disk stay theirs), never the key.
    this.#keys = keys.map((k) => ({ hash: digest(k), tenant: `key-${digest(`semantic-tenant\0${k}`).toString("hex").slice(0, 16)}` }));
  }

  get required(): boolean {
    return this.#keys.length > 0;
  }

  /**
   * The caller behind `x-api-key` or `Authorization: Bearer`, compared in constant time.
   * @example new Auth(["k1"]).authenticate(new Headers({ "x-api-key": "k1" })).tenant // "key-…"
   */
  authenticate(headers: Headers): Principal {
    if (!this.required) return { tenant: LOCAL_TENANT };
    const bearer = headers.get("authorization")?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
    const presented = headers.get("x-api-key") ?? bearer;
    if (!presented) throw new ApiError("authentication", "missing API key: send it as x-api-key or Authorization: Bearer");
    const h = digest(presented);
    let tenant: string | null = null;
    // Every key is compared (no early exit), each in constant time over equal-length digests.
    for (const k of this.#keys) if (timingSafeEqual(h, k.hash) && tenant === null) tenant = k.tenant;
    if (tenant === null) throw new ApiError("authentication", "invalid x-api-key");
    return { tenant };
  }
}

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** "host:port" or "[v6]:port" -> the bare host name ("[::1]:80" -> "::1"). */
function hostnameOf(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.lastIndexOf(":");
  return colon >= 0 && h.indexOf(":") === colon ? h.slice(0, colon) : h;
}

/**
 * DNS-rebinding and cross-site guard. Bound to loopback: the Host must be a loopback name (any
 * port) or an allowed host. Bound elsewhere (keys are then required): any Host unless a list is
 * configured. A browser Origin is refused unless it is loopback or allowed; no CORS headers are sent.
 */
export class HostGuard {
  readonly #strict: boolean;
  readonly #hosts: Set<string>;
  readonly #origins: Set<string>;

  constructor(bindHost: string, allowedHosts: readonly string[] = [], allowedOrigins: readonly string[] = []) {
    this.#hosts = new Set(allowedHosts.map((h) => h.toLowerCase()));
    this.#hosts.add(hostnameOf(bindHost));
    this.#strict = isLoopback(hostnameOf(bindHost)) || allowedHosts.length > 0;
    this.#origins = new Set(allowedOrigins.map((o) => o.toLowerCase().replace(/\/$/, "")));
  }

  check(headers: Headers): void {
    const host = headers.get("host");
    if (this.#strict) {
      const name = host ? hostnameOf(host) : "";
      if (!isLoopback(name) && !this.#hosts.has(name)) throw new ApiError("permission", `host not allowed: ${JSON.stringify(host ?? "")}`);
    }
    const origin = headers.get("origin");
    if (origin !== null && origin !== "null") {
      let originHost = "";
      try {
        originHost = new URL(origin).hostname.replace(/^\[|\]$/g, "");
      } catch {
        // not a URL: refused below
      }
      if (!isLoopback(originHost) && !this.#origins.has(origin.toLowerCase().replace(/\/$/, ""))) {
        throw new ApiError("permission", `origin not allowed: ${JSON.stringify(origin)}`);
      }
    } else if (origin === "null") {
      throw new ApiError("permission", 'origin not allowed: "null"');
    }
  }
}

// A conservative charset: ids become cache keys and (hashed) file names. "." is allowed for
// e-mail-like user fields, but never two in a row.
const AGENT_ID = /^[A-Za-z0-9_.:@-]{1,256}$/;

/** Validates an agent id from `field`; null/empty means none. */
export function checkAgentId(value: string | null | undefined, field: string): string | null {
  if (value === null || value === undefined || value === "") return null;
  if (!AGENT_ID.test(value) || value.includes("..")) {
    throw new ApiError("invalid_request", `${field}: must be 1-256 characters of A-Z a-z 0-9 _ - . : @ (no "..")`, { param: field });
  }
  return value;
}

/**
 * The agent a turn continues: x-claude-code-session-id, else X-Session-ID, else the API's user
 * field (OpenAI `user`, Anthropic `metadata.user_id`). The engine binds it to the caller's tenant.
 */
export function agentIdOf(headers: Headers, user: string | null | undefined, userField: string): string | null {
  const claude = headers.get("x-claude-code-session-id");
  if (claude) return checkAgentId(claude, "x-claude-code-session-id");
  const session = headers.get("x-session-id");
  if (session) return checkAgentId(session, "x-session-id");
  return checkAgentId(user, userField);
}
