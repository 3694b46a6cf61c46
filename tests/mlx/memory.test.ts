// Native memory returns to its baseline: handles are freed by scopes, never by GC.
import { expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";

test("10,000 scoped iterations of a small graph leave MLX memory and handles at baseline", () => {
  const w = mx.array(Float32Array.from({ length: 64 * 64 }, (_, i) => (i % 7) / 7), [64, 64]);
  mx.evaluate(w);
  mx.clearCache();
  const before = mx.memoryStats().active;
  const handles = mx.handleCounts().live;
  const rss = process.memoryUsage().rss;
  let last = 0;
  for (let i = 0; i < 10_000; i++) {
    last = mx.tidy(() => {
      const x = mx.full([4, 64], i % 5);
      const y = mx.softmax(mx.add(mx.matmul(x, w), 1), -1);
      return mx.sum(y).item();
    });
  }
  expect(last).toBeCloseTo(4, 3);
  mx.clearCache();
  expect(mx.handleCounts().live).toBe(handles);
  expect(Math.abs(mx.memoryStats().active - before)).toBeLessThanOrEqual(1 << 20);
  // RSS is noisy (allocator, JIT); a leak of one 1 KiB result per iteration alone would add 10 MB.
  expect(process.memoryUsage().rss - rss).toBeLessThan(64 << 20);
  w.free();
  expect(mx.handleCounts().forgotten).toBe(0);
});

test("using releases a handle at the end of its block", () => {
  const start = mx.handleCounts().live;
  {
    using a = mx.keep(mx.array([1, 2, 3]));
    expect(mx.handleCounts().live).toBe(start + 1);
    expect(a.size).toBe(3);
  }
  expect(mx.handleCounts().live).toBe(start);
});

test("tidy keeps what it returns, in arrays and objects, and frees the rest", () => {
  const start = mx.handleCounts().live;
  const kept = mx.tidy(() => {
    const a = mx.array([1, 2]);
    const b = mx.add(a, 1);
    const c = mx.multiply(b, 2);
    return { pair: [b, c], n: 3 };
  });
  expect(mx.handleCounts().live).toBe(start + 2);
  expect(Array.from(kept.pair[1].toFloat32())).toEqual([4, 6]);
  mx.dispose(kept);
  expect(mx.handleCounts().live).toBe(start);
});

test("a throwing scope still frees its temporaries", () => {
  const start = mx.handleCounts().live;
  expect(() =>
    mx.tidy(() => {
      mx.array([1, 2, 3]);
      mx.matmul(mx.array([1, 2, 3], [1, 3]), mx.array([1, 2], [2, 1]));
    }),
  ).toThrow(mx.MlxError);
  expect(mx.handleCounts().live).toBe(start);
});
