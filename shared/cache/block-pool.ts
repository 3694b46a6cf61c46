// The block pool: KV caches in fixed-size blocks shared by prefix within a tenant, private
// agent tails, a hot tier (MLX arrays, LRU under a byte budget) and a warm tier (one
// content-addressed safetensors file per block, written once), rebuilt from disk at start.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { mkdir, open, rename, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { contiguous, dispose, evaluate, keep, type MxArray, slice, tidy, zeros } from "../mlx/index.ts";
import type { ModelCacheSpec } from "../models/model.ts";
import { BlockFileError, parseBlockFile, readBlockBytes, readBlockFile, writeBlockFile } from "./block-file.ts";
import { blockKey, chainKeys, nameOf } from "./block-key.ts";

export type PoolOptions = {
  /** The cache folder (under SEMANTIC_HOME); one subfolder per model tag. */
  dir: string;
  /** The model tag: caches are used only under the tag they were made under. */
  tag: string;
  spec: ModelCacheSpec;
  blockTokens?: number;
  /** Bytes of KV the hot tier may hold. */
  memoryBudget: number;
  /** Bytes of block files the warm tier may hold. */
  diskBudget?: number;
};

/** Per layer [K, V], each (1, n_kv_heads, n, head_dim); null for a sliding layer's dropped part. */
export type LayerKV = [MxArray, MxArray];
/** One layer's cached K and V as segments along the sequence (see BlockPool.borrow). */
export type LayerSegments = { keys: MxArray[]; values: MxArray[] };
/** A request's cached prefix, read in place until `release()` (see BlockPool.borrow). */
export type Borrowed = { layers: LayerSegments[]; release(): void };

type Block = {
  key: string;
  parent: string;
  tokens: number[];
  /** Hot data per layer, null when only on disk; a layer entry is null when dropped (sliding, out of window). */
  layers: (LayerKV | null)[] | null;
  bytes: number;
  onDisk: boolean;
  diskBytes: number;
  writing: Promise<void> | null;
  lastUsed: number;
  pinnedUntil: number;
  /** Agents whose chains include this block. */
  agents: number;
};

type AgentRecord = {
  agentId: string;
  tenant: string;
  tokens: number[];
  chain: string[];
  /** The private partial block after the chain: its tokens and (when hot) its data. */
  tail: { tokens: number[]; layers: LayerKV[] | null; onDisk: boolean };
  lastUsed: number;
  createdAt: number;
};

export type AgentInfo = { agentId: string; tokens: number; cachedBlocks: number; hot: boolean; lastUsed: string; createdAt: string };

export type Match = {
  tenant: string;
  /** Prompt tokens whose K/V the pool supplies (always leaves at least one to prefill). */
  cachedTokens: number;
  blocks: Block[];
  /** Agent tail tokens appended after the blocks (0 when none). */
  tailTokens: number;
  agent: AgentRecord | null;
};

export type PoolStats = {
  blockTokens: number;
  hotBlocks: number;
  warmBlocks: number;
  hotBytes: number;
  diskBytes: number;
  memoryBudget: number;
  diskBudget: number;
  hits: number;
  misses: number;
  hitTokens: number;
  /** Blocks dropped from memory (their file stays: hot -> warm). */
  evictions: number;
  /** Block files deleted to stay under the disk budget. */
  diskEvictions: number;
  quarantined: number;
  writeErrors: number;
  agents: number;
};

const MANIFEST_VERSION = 1;

export class BlockPool {
  readonly blockTokens: number;
  readonly #o: PoolOptions;
  readonly #root: string;
  readonly #blocks = new Map<string, Block>();
  readonly #agents = new Map<string, AgentRecord>();
  readonly #pending = new Set<Promise<void>>();
  #hotBytes = 0;
  #diskBytes = 0;
  /** Borrows not yet released (by number, in order), and what the pool dropped while some were out. */
  #borrowsMade = 0;
  readonly #borrowed = new Set<number>();
  #retired: { after: number; arrays: unknown }[] = [];
  #counters = { hits: 0, misses: 0, hitTokens: 0, evictions: 0, diskEvictions: 0, quarantined: 0, writeErrors: 0 };

  private constructor(o: PoolOptions) {
    this.#o = o;
    this.blockTokens = o.blockTokens ?? 256;
    this.#root = join(o.dir, nameOf(o.tag));
  }

  /** Opens (or creates) the pool for a model tag and rebuilds its index from disk. */
  static async open(o: PoolOptions): Promise<BlockPool> {
    const pool = new BlockPool(o);
    pool.#scan();
    return pool;
  }

  // ---- disk index ----

  #blockPath(key: string): string {
    return join(this.#root, "blocks", key.slice(0, 2), `${key}.safetensors`);
  }

  #agentDir(tenant: string): string {
    return join(this.#root, "agents", nameOf("tenant", tenant));
  }

  #agentPath(tenant: string, agentId: string, ext: string): string {
    return join(this.#agentDir(tenant), `${nameOf("agent", agentId)}.${ext}`);
  }

  #scan(): void {
    mkdirSync(join(this.#root, "blocks"), { recursive: true, mode: 0o700 });
    mkdirSync(join(this.#root, "agents"), { recursive: true, mode: 0o700 });
    for (const sub of readdirSync(join(this.#root, "blocks"))) {
      const dir = join(this.#root, "blocks", sub);
      for (const f of readdirSync(dir)) {
        const path = join(dir, f);
        // Orphaned temp files from a crash mid-write are never valid.
        if (f.includes(".tmp-")) {
          rmSync(path, { force: true });
          continue;
        }
        const m = f.match(/^([0-9a-f]{64})\.safetensors$/);
        if (!m) continue;
        const size = statSync(path).size;
        this.#blocks.set(m[1], {
          key: m[1], parent: "", tokens: [], layers: null, bytes: 0, onDisk: true, diskBytes: size,
          writing: null, lastUsed: statSync(path).mtimeMs, pinnedUntil: 0, agents: 0,
        });
        this.#diskBytes += size;
      }
    }
    for (const t of readdirSync(join(this.#root, "agents"))) {
      const dir = join(this.#root, "agents", t);
      for (const f of readdirSync(dir)) {
        const path = join(dir, f);
        if (f.includes(".tmp-")) {
          rmSync(path, { force: true });
          continue;
        }
        if (!f.endsWith(".json")) continue;
        try {
          if (statSync(path).size > 64 << 20) throw new Error("manifest too large");
          const r = JSON.parse(readFileSync(path, "utf8"));
          const ids = (v: unknown) => Array.isArray(v) && v.every((t) => Number.isInteger(t) && t >= 0);
          const valid = r && r.version === MANIFEST_VERSION && typeof r.agentId === "string" && typeof r.tenant === "string" &&
            ids(r.tokens) && ids(r.tailTokens) && Array.isArray(r.chain) && r.chain.every((k: unknown) => typeof k === "string" && /^[0-9a-f]{64}$/.test(k)) &&
            r.chain.length * this.blockTokens + r.tailTokens.length === r.tokens.length;
          if (!valid) throw new Error("bad manifest");
          if (nameOf("tenant", r.tenant) !== t || `${nameOf("agent", r.agentId)}.json` !== f) throw new Error("manifest in the wrong place");
          const rec: AgentRecord = {
            agentId: r.agentId, tenant: r.tenant, tokens: r.tokens, chain: r.chain,
            tail: { tokens: r.tailTokens, layers: null, onDisk: r.tailTokens.length > 0 },
            lastUsed: r.lastUsed, createdAt: r.createdAt,
          };
          this.#agents.set(this.#agentKey(r.tenant, r.agentId), rec);
          for (const k of rec.chain) {
            const b = this.#blocks.get(k);
            if (b) b.agents++;
          }
        } catch {
          this.#quarantine(path);
        }
      }
    }
  }

  #quarantine(path: string): void {
    this.#counters.quarantined++;
    const dir = join(this.#root, "quarantine");
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      renameSync(path, join(dir, `${Date.now()}-${path.split("/").pop()}`));
    } catch {
      rmSync(path, { force: true });
    }
  }

  #agentKey(tenant: string, agentId: string): string {
    return `${tenant}\0${agentId}`;
  }

  // ---- matching and gathering ----

  /**
   * The longest cached prefix of `ids` for this tenant: a chain of full shared blocks, or, for an
   * agent, everything its last turn left (blocks used partially, then its private tail) that the
   * prompt agrees with. At least the prompt's last token is always left to compute.
   */
  match(tenant: string, ids: readonly number[], agentId: string | null = null): Match {
    const T = this.blockTokens;
    const limit = ids.length - 1;
    const blocks: Block[] = [];
    for (const k of chainKeys(this.#o.tag, tenant, ids.slice(0, limit), T)) {
      const b = this.#blocks.get(k);
      if (!b) break;
      blocks.push(b);
    }
    let best: Match = { tenant, cachedTokens: blocks.length * T, blocks, tailTokens: 0, agent: null };
    const agent = agentId ? this.#agents.get(this.#agentKey(tenant, agentId)) ?? null : null;
    if (agent) {
      let common = 0;
      while (common < agent.tokens.length && common < limit && agent.tokens[common] === ids[common]) common++;
      const wanted = agent.chain.slice(0, Math.ceil(common / T));
      const own: Block[] = [];
      for (const k of wanted) {
        const b = this.#blocks.get(k);
        if (!b) break;
        own.push(b);
      }
      // A block evicted from disk cuts the reuse short; past the chain, the private tail serves.
      const cached = own.length === wanted.length ? common : own.length * T;
      const tailTokens = Math.max(0, cached - agent.chain.length * T);
      if (cached >= best.cachedTokens) best = { tenant, cachedTokens: cached, blocks: own, tailTokens, agent };
    }
    this.#trimForWindows(best);
    return best;
  }

  // A block whose sliding-window layers were dropped serves only positions past its window.
  #trimForWindows(m: Match): void {
    const T = this.blockTokens;
    const widest = Math.max(0, ...this.#o.spec.layers.map((l) => (l.kind === "sliding" ? l.window : 0)));
    if (!widest) return;
    const at = m.blocks.findIndex((b, i) => b.layers?.some((l) => l === null) && !b.onDisk && (i + 1) * T > m.cachedTokens - widest);
    if (at === -1) return;
    m.blocks.length = at;
    m.cachedTokens = at * T;
    m.tailTokens = 0;
  }

  /**
   * Brings the matched blocks (and agent tail) into memory, reading warm ones from disk. A bad
   * file is quarantined and the match is cut before it; the result is the usable match.
   */
  async prepare(m: Match): Promise<Match> {
    const T = this.blockTokens;
    const warm = m.blocks.flatMap((b, i) => {
      const needsAll = this.#layersNeeded(i, m.cachedTokens);
      return b.layers && b.layers.every((l, li) => l || !needsAll[li]) ? [] : [i];
    });
    // The next file is read while this one is checked and copied into arrays.
    const read = (k: number) => (k < warm.length ? readBlockBytes(this.#blockPath(m.blocks[warm[k]].key)).catch((e: BlockFileError) => e) : null);
    let next = read(0);
    for (let k = 0; k < warm.length; k++) {
      const i = warm[k];
      const bytes = await next!;
      next = read(k + 1);
      const ok = this.#load(m.blocks[i], m.tenant, bytes);
      if (!ok) {
        m.blocks.length = i;
        m.tailTokens = 0;
        m.cachedTokens = Math.min(m.cachedTokens, i * T);
        break;
      }
    }
    if (m.tailTokens && m.agent && !m.agent.tail.layers) {
      const ok = await this.#loadTail(m.agent);
      if (!ok) {
        m.cachedTokens = m.blocks.length * T;
        m.tailTokens = 0;
      }
    }
    if (m.cachedTokens > 0) {
      this.#counters.hits++;
      this.#counters.hitTokens += m.cachedTokens;
    } else this.#counters.misses++;
    const now = Date.now();
    for (const b of m.blocks) b.lastUsed = now;
    return m;
  }

  #layersNeeded(blockIndex: number, end: number): boolean[] {
    const T = this.blockTokens;
    return this.#o.spec.layers.map((l) => l.kind === "global" || (blockIndex + 1) * T > end - l.window);
  }

  #load(b: Block, tenant: string, bytes: Buffer | BlockFileError): boolean {
    const path = this.#blockPath(b.key);
    try {
      if (bytes instanceof BlockFileError) throw bytes;
      const loaded = parseBlockFile(path, bytes, { tag: this.#o.tag, key: b.key }, (parent, tokens) => blockKey(this.#o.tag, tenant, parent, tokens));
      const layers = this.#o.spec.layers.map((_, i) => {
        const k = loaded.tensors.get(`l${i}.k`);
        const v = loaded.tensors.get(`l${i}.v`);
        if (!k || !v) throw new BlockFileError(`${path}: layer ${i} is missing`);
        return [keep(k), keep(v)] as LayerKV;
      });
      this.#checkShapes(layers, loaded.identity.tokens.length, path);
      if (b.layers) this.#dropData(b);
      b.layers = layers;
      b.tokens = loaded.identity.tokens;
      b.parent = loaded.identity.parent;
      b.bytes = layerBytes(layers);
      this.#hotBytes += b.bytes;
      this.#enforceMemoryBudget(new Set([b]));
      return true;
    } catch (e) {
      if (!(e instanceof BlockFileError)) throw e;
      this.#quarantine(path);
      this.#forget(b);
      return false;
    }
  }

  #checkShapes(layers: LayerKV[], tokens: number, path: string): void {
    const { nKvHeads, headDim, kvDtype } = this.#o.spec;
    for (const [k, v] of layers) {
      for (const a of [k, v]) {
        const s = a.shape;
        if (s.length !== 4 || s[0] !== 1 || s[1] !== nKvHeads || s[2] !== tokens || s[3] !== headDim || a.dtype !== kvDtype) {
          dispose(layers);
          throw new BlockFileError(`${path}: tensor shape ${JSON.stringify(s)} does not fit the model`);
        }
      }
    }
  }

  async #loadTail(a: AgentRecord): Promise<boolean> {
    const path = this.#agentPath(a.tenant, a.agentId, "tail.safetensors");
    const parent = a.chain.at(-1) ?? "";
    const key = blockKey(this.#o.tag, a.tenant, parent, a.tail.tokens);
    try {
      const loaded = await readBlockFile(path, { tag: this.#o.tag, key }, (p, tokens) => blockKey(this.#o.tag, a.tenant, p, tokens));
      const layers = this.#o.spec.layers.map((_, i) => [keep(loaded.tensors.get(`l${i}.k`)!), keep(loaded.tensors.get(`l${i}.v`)!)] as LayerKV);
      this.#checkShapes(layers, a.tail.tokens.length, path);
      a.tail.layers = layers;
      this.#hotBytes += layerBytes(layers);
      return true;
    } catch (e) {
      if (!(e instanceof BlockFileError)) throw e;
      this.#quarantine(path);
      a.tail = { tokens: [], layers: null, onDisk: false };
      return false;
    }
  }

  /**
   * Per-layer K and V for the first `m.cachedTokens` tokens as segments along the sequence, one
   * per block (and the agent's tail), (1, H, tokens, D) each: the pool's own arrays, not copies,
   * which attention reads in place. What the pool drops while borrows are out is set aside and
   * freed once every borrow made before the drop is released (later ones cannot hold it), so the
   * segments stay valid even if their blocks are evicted meanwhile. Sliding layers get zeros
   * where their dropped blocks were (never attended).
   */
  borrow(m: Match): Borrowed {
    const n = m.cachedTokens;
    const T = this.blockTokens;
    const { nKvHeads: H, headDim: D, kvDtype } = this.#o.spec;
    const made: MxArray[] = [];
    const own = (a: MxArray) => (made.push(keep(a)), a);
    const view = (a: MxArray, take: number) => (take === T ? a : own(slice(a, [0, 0, 0, 0], [1, H, take, D])));
    const layers = this.#o.spec.layers.map((_, li) => {
      const keys: MxArray[] = [];
      const values: MxArray[] = [];
      for (let i = 0; i < m.blocks.length && i * T < n; i++) {
        const take = Math.min(T, n - i * T);
        const layer = m.blocks[i].layers?.[li];
        const z = layer ? null : own(zeros([1, H, take, D], kvDtype));
        keys.push(layer ? view(layer[0], take) : z!);
        values.push(layer ? view(layer[1], take) : z!);
      }
      const tail = m.tailTokens && m.agent?.tail.layers?.[li];
      if (tail) {
        keys.push(own(slice(tail[0], [0, 0, 0, 0], [1, H, m.tailTokens, D])));
        values.push(own(slice(tail[1], [0, 0, 0, 0], [1, H, m.tailTokens, D])));
      }
      return { keys, values };
    });
    const id = ++this.#borrowsMade;
    this.#borrowed.add(id);
    return {
      layers,
      release: () => {
        if (!this.#borrowed.delete(id)) return;
        dispose(made);
        const oldest = Math.min(...this.#borrowed); // Infinity when none is out
        const free = this.#retired.filter((r) => r.after < oldest);
        this.#retired = this.#retired.filter((r) => r.after >= oldest);
        dispose(free.map((r) => r.arrays));
      },
    };
  }

  // Frees arrays the pool no longer holds, or sets them aside while a borrow made so far may read them.
  #free(arrays: unknown): void {
    if (!this.#borrowed.size) dispose(arrays);
    else this.#retired.push({ after: this.#borrowsMade, arrays });
  }

  // ---- write-back ----

  /**
   * Stores the K/V of `ids` (per layer, (1, H, >= ids.length, D)) after a turn: new full blocks
   * join the shared index and are persisted in the background; with an agent, the rest becomes
   * its private tail and its manifest is rewritten. Returns the prompt-side tokens newly cached.
   */
  commit(tenant: string, agentId: string | null, ids: readonly number[], kv: LayerKV[], opts: { pinTokens?: number; ttlMs?: number } = {}): { createdTokens: number } {
    const T = this.blockTokens;
    const keys = chainKeys(this.#o.tag, tenant, ids, T);
    const { nKvHeads: H, headDim: D } = this.#o.spec;
    const now = Date.now();
    const touched = new Set<Block>();
    let created = 0;
    let parent = "";
    keys.forEach((key, i) => {
      let b = this.#blocks.get(key);
      if (!b || (!b.layers && !b.onDisk)) {
        const layers = tidy(() => kv.map(([k, v]) => [contiguous(slice(k, [0, 0, i * T, 0], [1, H, (i + 1) * T, D])), contiguous(slice(v, [0, 0, i * T, 0], [1, H, (i + 1) * T, D]))] as LayerKV));
        for (const [k, v] of layers) keep(k), keep(v);
        evaluate(...layers.flat());
        b = { key, parent, tokens: ids.slice(i * T, (i + 1) * T), layers, bytes: layerBytes(layers), onDisk: false, diskBytes: 0, writing: null, lastUsed: now, pinnedUntil: 0, agents: 0 };
        this.#blocks.set(key, b);
        this.#hotBytes += b.bytes;
        this.#persist(b);
        created += T;
      } else if (b.onDisk && !b.tokens.length) {
        b.tokens = ids.slice(i * T, (i + 1) * T);
        b.parent = parent;
      }
      b.lastUsed = now;
      if (opts.pinTokens && i * T < opts.pinTokens) b.pinnedUntil = Math.max(b.pinnedUntil, now + (opts.ttlMs ?? 5 * 60_000));
      touched.add(b);
      parent = key;
    });
    if (agentId) this.#commitAgent(tenant, agentId, ids, keys, kv);
    this.#dropOutOfWindow(keys, ids.length);
    this.#enforceMemoryBudget(touched);
    return { createdTokens: created };
  }

  #commitAgent(tenant: string, agentId: string, ids: readonly number[], keys: string[], kv: LayerKV[]): void {
    const T = this.blockTokens;
    const ak = this.#agentKey(tenant, agentId);
    const old = this.#agents.get(ak);
    const { nKvHeads: H, headDim: D } = this.#o.spec;
    for (const k of old?.chain ?? []) {
      const b = this.#blocks.get(k);
      if (b) b.agents--;
    }
    for (const k of keys) this.#blocks.get(k)!.agents++;
    if (old?.tail.layers) {
      this.#hotBytes -= layerBytes(old.tail.layers);
      this.#free(old.tail.layers);
    }
    const tailFrom = keys.length * T;
    const tailTokens = ids.slice(tailFrom);
    let tailLayers: LayerKV[] | null = null;
    if (tailTokens.length) {
      tailLayers = tidy(() => kv.map(([k, v]) => [contiguous(slice(k, [0, 0, tailFrom, 0], [1, H, ids.length, D])), contiguous(slice(v, [0, 0, tailFrom, 0], [1, H, ids.length, D]))] as LayerKV));
      for (const [k, v] of tailLayers) keep(k), keep(v);
      evaluate(...tailLayers.flat());
      this.#hotBytes += layerBytes(tailLayers);
    }
    const now = Date.now();
    const rec: AgentRecord = {
      agentId, tenant, tokens: [...ids], chain: keys,
      tail: { tokens: tailTokens, layers: tailLayers, onDisk: false },
      lastUsed: now, createdAt: old?.createdAt ?? now,
    };
    this.#agents.set(ak, rec);
    this.#track(this.#saveAgent(rec));
  }

  // Manifest after its blocks and tail are durable: a crash never leaves it pointing at nothing.
  async #saveAgent(rec: AgentRecord): Promise<void> {
    const waits = rec.chain.map((k) => this.#blocks.get(k)?.writing).filter(Boolean);
    await Promise.all(waits);
    const dir = this.#agentDir(rec.tenant);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (rec.tail.layers && rec.tail.tokens.length) {
      const parent = rec.chain.at(-1) ?? "";
      const key = blockKey(this.#o.tag, rec.tenant, parent, rec.tail.tokens);
      try {
        await writeBlockFile(this.#agentPath(rec.tenant, rec.agentId, "tail.safetensors"), { tag: this.#o.tag, key, parent, tokens: rec.tail.tokens }, layerTensors(rec.tail.layers));
        rec.tail.onDisk = true;
      } catch {
        this.#counters.writeErrors++;
        return;
      }
    }
    if (this.#agents.get(this.#agentKey(rec.tenant, rec.agentId)) !== rec) return; // superseded by a newer turn
    const manifest = {
      version: MANIFEST_VERSION, agentId: rec.agentId, tenant: rec.tenant, tokens: rec.tokens, chain: rec.chain,
      tailTokens: rec.tail.tokens, lastUsed: rec.lastUsed, createdAt: rec.createdAt,
    };
    await atomicWrite(this.#agentPath(rec.tenant, rec.agentId, "json"), JSON.stringify(manifest)).catch(() => {
      this.#counters.writeErrors++;
    });
  }

  #persist(b: Block): void {
    if (b.onDisk || b.writing || !b.layers) return;
    const layers = b.layers as LayerKV[];
    const write = writeBlockFile(this.#blockPath(b.key), { tag: this.#o.tag, key: b.key, parent: b.parent, tokens: b.tokens }, layerTensors(layers))
      .then((bytes) => {
        b.onDisk = true;
        b.diskBytes = bytes;
        this.#diskBytes += bytes;
        this.#enforceDiskBudget();
      })
      .catch(() => {
        this.#counters.writeErrors++;
      })
      .finally(() => {
        b.writing = null;
      });
    b.writing = write;
    this.#track(write);
  }

  #track(p: Promise<void>): void {
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p));
  }

  /** Waits until every started write (blocks, tails, manifests) has finished. */
  async flush(): Promise<void> {
    while (this.#pending.size) await Promise.all([...this.#pending]);
  }

  // ---- budgets ----

  // Sliding layers of blocks behind every window of this chain, used by this agent alone.
  #dropOutOfWindow(keys: string[], end: number): void {
    keys.forEach((key, i) => {
      const b = this.#blocks.get(key);
      if (!b?.layers || b.agents > 1 || !b.onDisk) return;
      const needed = this.#layersNeeded(i, end);
      b.layers.forEach((l, li) => {
        if (l && !needed[li]) {
          const bytes = layerBytes([l]);
          this.#free(l);
          b.layers![li] = null;
          b.bytes -= bytes;
          this.#hotBytes -= bytes;
        }
      });
    });
  }

  #enforceMemoryBudget(keepHot: Set<Block>): void {
    if (this.#hotBytes <= this.#o.memoryBudget) return;
    const now = Date.now();
    const candidates = [...this.#blocks.values()].filter((b) => b.layers && !keepHot.has(b) && b.pinnedUntil < now).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const b of candidates) {
      if (this.#hotBytes <= this.#o.memoryBudget) break;
      if (b.onDisk) {
        this.#dropData(b);
        this.#counters.evictions++;
      } else {
        // Not yet durable: drop it from memory once its file is written.
        this.#persist(b);
        b.writing?.then(() => {
          if (b.onDisk && b.lastUsed <= now && b.layers) {
            this.#dropData(b);
            this.#counters.evictions++;
          }
        });
      }
    }
  }

  #dropData(b: Block): void {
    if (!b.layers) return;
    this.#hotBytes -= b.bytes;
    this.#free(b.layers);
    b.layers = null;
    b.bytes = 0;
  }

  #forget(b: Block): void {
    this.#dropData(b);
    if (b.onDisk) this.#diskBytes -= b.diskBytes;
    this.#blocks.delete(b.key);
  }

  #enforceDiskBudget(): void {
    const budget = this.#o.diskBudget ?? Number.POSITIVE_INFINITY;
    if (this.#diskBytes <= budget) return;
    const now = Date.now();
    const candidates = [...this.#blocks.values()].filter((b) => b.onDisk && !b.writing && b.pinnedUntil < now).sort((a, b) => a.agents - b.agents || a.lastUsed - b.lastUsed);
    for (const b of candidates) {
      if (this.#diskBytes <= budget) break;
      const path = this.#blockPath(b.key);
      this.#counters.diskEvictions++;
      this.#diskBytes -= b.diskBytes;
      b.onDisk = false;
      b.diskBytes = 0;
      if (!b.layers) this.#blocks.delete(b.key);
      this.#track(unlink(path).catch(() => {}));
    }
  }

  // ---- agents ----

  listAgents(tenant: string): AgentInfo[] {
    return [...this.#agents.values()].filter((a) => a.tenant === tenant).map((a) => this.#info(a));
  }

  getAgent(tenant: string, agentId: string): AgentInfo | null {
    const a = this.#agents.get(this.#agentKey(tenant, agentId));
    return a ? this.#info(a) : null;
  }

  /** Forgets an agent: its manifest and tail go; shared blocks stay for other requests. */
  async deleteAgent(tenant: string, agentId: string): Promise<boolean> {
    const key = this.#agentKey(tenant, agentId);
    const a = this.#agents.get(key);
    if (!a) return false;
    this.#agents.delete(key);
    for (const k of a.chain) {
      const b = this.#blocks.get(k);
      if (b) b.agents--;
    }
    if (a.tail.layers) {
      this.#hotBytes -= layerBytes(a.tail.layers);
      this.#free(a.tail.layers);
    }
    await this.flush();
    await rm(this.#agentPath(tenant, agentId, "json"), { force: true });
    await rm(this.#agentPath(tenant, agentId, "tail.safetensors"), { force: true });
    return true;
  }

  #info(a: AgentRecord): AgentInfo {
    const hot = a.chain.every((k) => this.#blocks.get(k)?.layers) && (!a.tail.tokens.length || !!a.tail.layers);
    return {
      agentId: a.agentId, tokens: a.tokens.length, cachedBlocks: a.chain.filter((k) => this.#blocks.has(k)).length,
      hot, lastUsed: new Date(a.lastUsed).toISOString(), createdAt: new Date(a.createdAt).toISOString(),
    };
  }

  stats(): PoolStats {
    let hot = 0;
    let warm = 0;
    for (const b of this.#blocks.values()) {
      if (b.layers) hot++;
      else if (b.onDisk) warm++;
    }
    return {
      blockTokens: this.blockTokens, hotBlocks: hot, warmBlocks: warm, hotBytes: this.#hotBytes, diskBytes: this.#diskBytes,
      memoryBudget: this.#o.memoryBudget, diskBudget: this.#o.diskBudget ?? Number.POSITIVE_INFINITY,
      ...this.#counters, agents: this.#agents.size,
    };
  }

  /** Frees every hot array (after flush, on shutdown). */
  close(): void {
    for (const b of this.#blocks.values()) this.#dropData(b);
    for (const a of this.#agents.values()) {
      if (a.tail.layers) this.#free(a.tail.layers);
      a.tail.layers = null;
    }
    this.#hotBytes = 0;
  }
}

function layerBytes(layers: (LayerKV | null)[]): number {
  let n = 0;
  for (const l of layers) if (l) n += l[0].nbytes + l[1].nbytes;
  return n;
}

function layerTensors(layers: LayerKV[]): [string, MxArray][] {
  return layers.flatMap(([k, v], i) => [[`l${i}.k`, k], [`l${i}.v`, v]] as [string, MxArray][]);
}

async function atomicWrite(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const h = await open(tmp, "wx", 0o600);
  try {
    await h.writeFile(text);
    await h.sync();
  } finally {
    await h.close();
  }
  await rename(tmp, path);
}

