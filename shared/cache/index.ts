// The block pool's surface for the engine and the functions.
export { BlockPool, type AgentInfo, type Borrowed, type LayerKV, type LayerSegments, type Match, type PoolOptions, type PoolStats } from "./block-pool.ts";
export { AgentBusyError, Leases, type Lease } from "./leases.ts";
export { nameOf } from "./block-key.ts";
