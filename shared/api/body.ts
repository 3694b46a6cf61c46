// Request bodies read with an explicit byte limit, strict UTF-8 and strict JSON: bad bytes,
// lone surrogates and NUL characters are refused with a 400 before any schema sees them.
import { ApiError } from "./errors.ts";

/** 8 MiB: a 200K-token conversation with tool definitions fits several times over. */
export const DEFAULT_BODY_LIMIT = 8 * 1024 * 1024;

const MAX_DEPTH = 256;

const tooLarge = (limit: number) =>
  new ApiError("request_too_large", `request body is larger than the ${limit}-byte limit`);

/** Reads at most `limit` bytes (checked against Content-Length first, then while streaming). */
export async function readBody(request: Request, limit: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit);
  if (!request.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes to a JSON value, refusing invalid bytes, bad JSON, lone surrogates, NUL and deep nesting. */
export function parseJsonBody(bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) throw new ApiError("invalid_request", "body: a JSON object is required", { param: "body" });
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ApiError("invalid_request", "body: not valid UTF-8", { param: "body" });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ApiError("invalid_request", `body: invalid JSON (${(e as Error).message})`, { param: "body" });
  }
  checkStrings(value);
  return value;
}

// Iterative, so a hostile nesting depth cannot overflow the stack.
function checkStrings(root: unknown): void {
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v === "string") checkString(v);
    else if (v !== null && typeof v === "object") {
      if (depth >= MAX_DEPTH) throw new ApiError("invalid_request", `body: nested deeper than ${MAX_DEPTH} levels`, { param: "body" });
      if (Array.isArray(v)) for (const x of v) stack.push([x, depth + 1]);
      else
        for (const [k, x] of Object.entries(v)) {
          checkString(k);
          stack.push([x, depth + 1]);
        }
    }
  }
}

function checkString(s: string): void {
  if (!s.isWellFormed()) throw new ApiError("invalid_request", "body: strings must be valid Unicode (a lone surrogate was found)", { param: "body" });
  if (s.includes("\u0000")) throw new ApiError("invalid_request", "body: strings must not contain NUL characters", { param: "body" });
}
