// Waiting requests: FIFO within a tenant, least-recently-served tenant first across tenants.
import { expect, test } from "bun:test";
import { FairQueue } from "../../shared/engine/fair-queue.ts";

const drain = (q: FairQueue<string>) => Array.from({ length: q.size }, () => q.take()!);

test("one tenant's requests come out in arrival order", () => {
  const q = new FairQueue<string>();
  for (const r of ["a1", "a2", "a3"]) q.push("a", r);
  expect(q.peek()).toBe("a1");
  expect(drain(q)).toEqual(["a1", "a2", "a3"]);
  expect(q.take()).toBeUndefined();
});

test("tenants alternate: a flood does not starve a single request that arrived after it", () => {
  const q = new FairQueue<string>();
  for (let i = 1; i <= 12; i++) q.push("a", `a${i}`);
  q.push("b", "b1");
  expect(drain(q).slice(0, 3)).toEqual(["a1", "b1", "a2"]);
});

test("a tenant arriving while a flood is served goes next; a served tenant waits its turn", () => {
  const q = new FairQueue<string>();
  for (let i = 1; i <= 6; i++) q.push("a", `a${i}`);
  expect([q.take(), q.take()]).toEqual(["a1", "a2"]);
  q.push("b", "b1");
  q.push("c", "c1");
  q.push("b", "b2");
  expect(drain(q)).toEqual(["b1", "c1", "a3", "b2", "a4", "a5", "a6"]);
});

test("remove takes out a waiting request and keeps the rest in order", () => {
  const q = new FairQueue<string>();
  q.push("a", "a1");
  q.push("a", "a2");
  q.push("b", "b1");
  expect(q.remove("a", "a1")).toBe(true);
  expect(q.remove("a", "a1")).toBe(false);
  expect(q.size).toBe(2);
  expect(drain(q)).toEqual(["a2", "b1"]);
});
