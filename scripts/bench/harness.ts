// What the benchmarks that compare engines share: waiting for a shared machine to quiet down,
// running one engine in its own process (its last stdout line is its JSON result) while noting
// the CPU other processes took meanwhile, and small number helpers.
import { existsSync, readFileSync } from "node:fs";
import { repoRoot } from "../../shared/paths.ts";
import type { Peer } from "./peers/setup.ts";

/** Jiffies (1/100 s, summed over cores) the machine spent busy, and in all, since boot. */
export function cpuJiffies(): { busy: number; total: number } | null {
  if (!existsSync("/proc/stat")) return null;
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((x, y) => x + y, 0);
  return { busy: total - f[3] - f[4], total };
}

/** Waits (up to `maxS`) for a second in which other processes use under 20% of the machine. */
export async function waitForQuiet(maxS: number, log: (msg: string) => void): Promise<void> {
  const t0 = performance.now();
  for (let said = false; ; said = true) {
    const a = cpuJiffies();
    await Bun.sleep(1000);
    const b = cpuJiffies();
    if (!a || !b) return;
    const share = (b.busy - a.busy) / Math.max(1, b.total - a.total);
    if (share < 0.2) return;
    if ((performance.now() - t0) / 1000 > maxS) return log(`other processes still use ${(share * 100).toFixed(0)}% of the CPUs; measuring anyway`);
    if (!said) log(`waiting up to ${maxS} s for other processes (${(share * 100).toFixed(0)}% of the CPUs) to quiet down`);
  }
}

/**
 * The share of the machine's CPU that processes other than `own` took between two
 * `cpuJiffies()` readings, given the CPU seconds `own` used meanwhile.
 */
export function othersShare(a: ReturnType<typeof cpuJiffies>, b: ReturnType<typeof cpuJiffies>, ownCpuSeconds: number): number | undefined {
  if (!a || !b) return undefined;
  return Math.max(0, (b.busy - a.busy - ownCpuSeconds * 100) / Math.max(1, b.total - a.total));
}

export type MeasureOptions = {
  log: (msg: string) => void;
  /** Seconds to wait for a quiet machine first. */
  quietWaitS: number;
  /** Threads for BLAS (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS). */
  threads: number;
  /** The process is killed after this long. */
  timeoutMs: number;
  /** Said in the reason when the timeout struck, e.g. "(BENCH_PEER_TIMEOUT)". */
  timeoutHint?: string;
};

/**
 * Runs one measuring process after a quiet wait; its last stdout line is its JSON result, to
 * which `othersCpu` (the share of the machine other processes took meanwhile) is added. A
 * failure is a reason, never a throw: the bench goes on without that engine.
 */
export async function measureProcess<T extends { othersCpu?: number }>(what: string, cmd: string[], o: MeasureOptions): Promise<Peer<T & { seconds: number }>> {
  await waitForQuiet(o.quietWaitS, o.log);
  o.log(`${what} ...`);
  const t0 = performance.now();
  const cpu0 = cpuJiffies();
  const proc = Bun.spawn(cmd, {
    cwd: repoRoot, stdout: "pipe", stderr: "pipe",
    env: { ...process.env, OPENBLAS_NUM_THREADS: String(o.threads), OMP_NUM_THREADS: String(o.threads) },
  });
  const timer = setTimeout(() => proc.kill(), o.timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const cpu1 = cpuJiffies();
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) {
    const reason = proc.signalCode
      ? `abandoned after ${Math.round(o.timeoutMs / 1000)} s${o.timeoutHint ? ` ${o.timeoutHint}` : ""}`
      : `exit ${code}: ${stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 300)}`;
    o.log(`${what}: failed (${reason})`);
    return { ok: false, reason };
  }
  let value: T & { seconds: number };
  try {
    value = { ...(JSON.parse(stdout.trim().split("\n").at(-1)!) as T), seconds };
  } catch {
    return { ok: false, reason: `unreadable output: ${stdout.slice(0, 200)}` };
  }
  const share = othersShare(cpu0, cpu1, Number(proc.resourceUsage()?.cpuTime.total ?? 0n) / 1e6);
  if (share !== undefined) value.othersCpu = share;
  o.log(`${what}: done in ${seconds.toFixed(0)} s`);
  return { ok: true, value };
}

/** The q-quantile of `xs` (nearest rank, no interpolation); NaN when empty. */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : Number.NaN;
}

/** A number with `d` decimals, or an em dash when it is not finite. */
export const fmt = (x: number | undefined, d = 1): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : "—");

/** Seconds per call of `fn` (which evaluates its result), repeated for about `targetS` after one warm-up call. */
export function secondsPerCall(targetS: number, fn: () => void): number {
  const t0 = Bun.nanoseconds();
  fn(); // warm-up, and a first estimate
  const once = (Bun.nanoseconds() - t0) / 1e9;
  const n = Math.max(1, Math.min(2000, Math.round(targetS / Math.max(once, 1e-6))));
  const t1 = Bun.nanoseconds();
  for (let i = 0; i < n; i++) fn();
  return (Bun.nanoseconds() - t1) / 1e9 / n;
}
