// Keys of the block pool: chained hashes over (model tag, tenant, parent key, token ids), so a
// block is only ever found by a request of the same model, tenant and exact prefix.
import { createHash } from "node:crypto";

/** The key of a block holding `tokens` after the block `parent` ("" for the first). */
export function blockKey(tag: string, tenant: string, parent: string, tokens: ArrayLike<number>): string {
  const h = createHash("sha256");
  h.update(`${tag}\0${tenant}\0${parent}\0`);
  h.update(new Uint8Array(Int32Array.from(tokens).buffer));
  return h.digest("hex");
}

/** Keys of every full block of `ids`, in order. */
export function chainKeys(tag: string, tenant: string, ids: readonly number[], blockTokens: number): string[] {
  const keys: string[] = [];
  let parent = "";
  for (let at = 0; at + blockTokens <= ids.length; at += blockTokens) {
    parent = blockKey(tag, tenant, parent, ids.slice(at, at + blockTokens));
    keys.push(parent);
  }
  return keys;
}

/** A stable, path-safe name for any identifier (agent ids, tenants, tags): never the raw text. */
export function nameOf(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 32);
}
