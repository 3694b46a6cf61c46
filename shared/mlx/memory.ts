// MLX's allocator statistics and limits, and the default device.
import { check, lib, out, readI32, readU64 } from "./native.ts";

export type MemoryStats = { active: number; peak: number; cache: number; limit: number };

export function memoryStats(): MemoryStats {
  const l = lib();
  check(l.sm_memory_active(out));
  const active = readU64();
  check(l.sm_memory_peak(out));
  const peak = readU64();
  check(l.sm_memory_cache(out));
  const cache = readU64();
  check(l.sm_memory_limit(out));
  return { active, peak, cache, limit: readU64() };
}

export function resetPeakMemory(): void {
  check(lib().sm_memory_reset_peak());
}

/** Returns freed-but-cached buffers to the system. */
export function clearCache(): void {
  check(lib().sm_memory_clear_cache());
}

/** Sets the allocator's memory limit in bytes; returns the previous one. */
export function setMemoryLimit(bytes: number): number {
  check(lib().sm_set_memory_limit(out, BigInt(bytes)));
  return readU64();
}

/** Sets how many bytes of freed buffers MLX keeps for reuse; returns the previous value. */
export function setCacheLimit(bytes: number): number {
  check(lib().sm_set_cache_limit(out, BigInt(bytes)));
  return readU64();
}

export type Device = "gpu" | "cpu";

/** MLX's default device: the GPU (Metal) when present, else the CPU. */
export function defaultDevice(): Device {
  check(lib().sm_default_device(out));
  return readI32() ? "gpu" : "cpu";
}

export function gpuAvailable(): boolean {
  check(lib().sm_gpu_available(out));
  return readI32() === 1;
}
