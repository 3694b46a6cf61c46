// One KV block on disk: a safetensors file written by our own code (atomic: temp file, fsync,
// rename, fsync of the folder), and read back only after its header, identity and checksum
// are validated, so a truncated, corrupted or foreign file is never used.
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, constants, fstatSync, openSync, read } from "node:fs";
import { type FileHandle, mkdir, open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { array, arraysFromData, Dtype, itemSize, type MxArray } from "../mlx/index.ts";
import { safetensorsNames } from "../mlx/dtype.ts";
import { parseSafetensors, SafetensorsError } from "../models/safetensors-header.ts";

export const BLOCK_FORMAT = "semantic-kv-block/1";

/** What a block file's metadata says of itself; every field is checked on load. */
export type BlockIdentity = {
  tag: string;
  key: string;
  parent: string;
  tokens: number[];
};

export class BlockFileError extends Error {
  override name = "BlockFileError";
}

const dtypeName = Object.fromEntries(Object.entries(safetensorsNames).map(([name, d]) => [d, name])) as Record<Dtype, string>;

// The checksum covers every data byte, with xxHash3 (in Bun; ~9 GB/s over a block just read,
// 1.6x xxHash64). Files written before it carry a bare xxHash64 hex string and still load.
const XXH3 = "xxh3:";

function checksum(parts: readonly Uint8Array[], legacy = false): string {
  let h = 0n;
  for (const p of parts) h = legacy ? Bun.hash.xxHash64(p, h) : Bun.hash.xxHash3(p, h);
  return legacy ? h.toString(16) : XXH3 + h.toString(16);
}

/** The bytes of an evaluated, contiguous array (a copy: the write outlives no MLX memory). */
function bytesOf(a: MxArray): Uint8Array {
  const v = a.data();
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

let fullSync: ((fd: number) => number) | null | undefined;

/** fsync, or on macOS fcntl(F_FULLFSYNC): plain fsync there does not reach the disk's platter. */
async function durable(handle: FileHandle): Promise<void> {
  if (process.platform === "darwin") {
    if (fullSync === undefined) {
      try {
        const libc = dlopen("/usr/lib/libSystem.B.dylib", { fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
        fullSync = (fd) => libc.symbols.fcntl(fd, 51 /* F_FULLFSYNC */, 0);
      } catch {
        fullSync = null;
      }
    }
    if (fullSync && fullSync(handle.fd) === 0) return;
  }
  await handle.sync();
}

async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, constants.O_RDONLY);
  try {
    await durable(h);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    await h.close();
  }
}

/**
 * Writes named arrays (evaluated, row-contiguous) as `path`, atomically. On any error the temp
 * file is removed and the error rethrown: no partial file is ever left under `path`.
 */
export async function writeBlockFile(path: string, id: BlockIdentity, tensors: [string, MxArray][]): Promise<number> {
  const datas = tensors.map(([, a]) => bytesOf(a));
  let at = 0;
  const header: Record<string, unknown> = {};
  tensors.forEach(([name, a], i) => {
    header[name] = { dtype: dtypeName[a.dtype], shape: a.shape, data_offsets: [at, at + datas[i].byteLength] };
    at += datas[i].byteLength;
  });
  header.__metadata__ = {
    format: BLOCK_FORMAT, tag: id.tag, key: id.key, parent: id.parent,
    tokens: JSON.stringify(id.tokens), checksum: checksum(datas),
  };
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // align data to 8 bytes
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, "utf8");

  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const h = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await h.write(head);
    for (const d of datas) await h.write(d);
    await durable(h);
  } catch (e) {
    await h.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await h.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dirname(path));
  return head.length + at;
}

export type LoadedBlock = { identity: BlockIdentity; tensors: Map<string, MxArray>; bytes: number };

/**
 * Reads `path` and checks: safetensors header, format version, model tag, block key, the key
 * recomputed from (parent, tokens) by `keyOf`, and the data checksum. Throws BlockFileError
 * on any mismatch; arrays are created only after every check passed.
 */
export async function readBlockFile(path: string, expect: { tag: string; key: string }, keyOf: (parent: string, tokens: number[]) => string): Promise<LoadedBlock> {
  return parseBlockFile(path, await readBlockBytes(path), expect, keyOf);
}

/**
 * readBlockFile's first half: the file's bytes (not following a symlink), or a BlockFileError.
 * Open, size and close are synchronous (microseconds); only the read itself is asynchronous, so
 * it goes on while the caller checks another file, not waiting for the main thread between steps.
 */
export async function readBlockBytes(path: string): Promise<Buffer> {
  const cannotRead = (e: unknown) => new BlockFileError(`${path.split("/").pop()}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    throw cannotRead(e);
  }
  try {
    return await readWhole(fd);
  } catch (e) {
    throw cannotRead(e);
  } finally {
    closeSync(fd);
  }
}

/** readBlockFile's second half, over readBlockBytes' bytes (whose buffer it takes back). */
export function parseBlockFile(path: string, bytes: Buffer, expect: { tag: string; key: string }, keyOf: (parent: string, tokens: number[]) => string): LoadedBlock {
  try {
    return parseBlock(path.split("/").pop()!, bytes, expect, keyOf);
  } finally {
    releaseBuffer(bytes);
  }
}

// Files are read into reused buffers (the arrays copy their bytes out): a fresh buffer per
// block file (~12 MB for SmolLM2) costs page faults that took as long as the read itself. Two:
// the pool reads the next file while it checks one.
const spareBuffers: Buffer[] = [];
const SPARE_BUFFERS = 2;

async function readWhole(fd: number): Promise<Buffer> {
  const size = fstatSync(fd).size;
  const i = spareBuffers.findIndex((b) => b.byteLength >= size);
  // Never from Buffer's shared pool: a spare buffer must own all of its memory.
  const buffer = i >= 0 ? spareBuffers.splice(i, 1)[0] : Buffer.allocUnsafeSlow(size);
  let at = 0;
  while (at < size) {
    const { bytesRead } = await readAt(fd, buffer, at, size - at, at);
    if (bytesRead === 0) break; // shrank while being read: the checks below reject it
    at += bytesRead;
  }
  return buffer.subarray(0, at);
}

const readAt = promisify(read);

function releaseBuffer(bytes: Buffer): void {
  if (spareBuffers.length < SPARE_BUFFERS) spareBuffers.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.buffer.byteLength - bytes.byteOffset));
}

function parseBlock(name: string, bytes: Buffer, expect: { tag: string; key: string }, keyOf: (parent: string, tokens: number[]) => string): LoadedBlock {
  let header;
  try {
    header = parseSafetensors(bytes, name);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new BlockFileError(e.message);
    throw e;
  }
  const m = header.metadata;
  const fail = (why: string): never => {
    throw new BlockFileError(`${name}: ${why}`);
  };
  if (m.format !== BLOCK_FORMAT) fail(`format ${JSON.stringify(m.format)} is not ${BLOCK_FORMAT}`);
  if (m.tag !== expect.tag) fail("made under another model tag");
  if (m.key !== expect.key) fail("key does not match its file name");
  let tokens: number[];
  try {
    tokens = JSON.parse(m.tokens ?? "");
  } catch {
    return fail("token ids are not JSON");
  }
  if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t) && t >= 0)) fail("token ids are malformed");
  if (typeof m.parent !== "string" || keyOf(m.parent, tokens) !== expect.key) fail("key does not match its parent and tokens");
  const inOrder = [...header.tensors].sort((a, b) => a.begin - b.begin);
  const dataOf = (t: { begin: number; end: number }) => bytes.subarray(header.dataOffset + t.begin, header.dataOffset + t.end);
  const legacy = typeof m.checksum === "string" && !m.checksum.startsWith(XXH3);
  if (checksum(inOrder.map(dataOf), legacy) !== m.checksum) fail("checksum mismatch");
  for (const t of header.tensors) {
    const d = safetensorsNames[t.dtype];
    if (d !== Dtype.float32 && d !== Dtype.float16 && d !== Dtype.bfloat16) fail(`tensor ${t.name} has unsupported dtype ${t.dtype}`);
  }
  // MLX copies the data in; a typed view needs an offset that suits the element size, which
  // our own files have (the header is padded to 8 bytes), else a copy of the bytes first.
  const hostOf = (t: (typeof header.tensors)[number]) => {
    const dtype = safetensorsNames[t.dtype];
    let data: Uint8Array = dataOf(t);
    if (data.byteOffset % itemSize(dtype) !== 0) data = new Uint8Array(data);
    const n = data.byteLength / itemSize(dtype);
    return dtype === Dtype.float32 ? new Float32Array(data.buffer, data.byteOffset, n) : new Uint16Array(data.buffer, data.byteOffset, n);
  };
  const tensors = new Map<string, MxArray>();
  const [first] = header.tensors;
  if (first && header.tensors.every((t) => t.dtype === first.dtype && t.shape.length === first.shape.length)) {
    // One dtype and rank (every block we write): the copies run on the kernels' threads.
    const arrays = arraysFromData(header.tensors.map(hostOf), header.tensors.map((t) => t.shape), safetensorsNames[first.dtype]);
    header.tensors.forEach((t, i) => tensors.set(t.name, arrays[i]));
  } else {
    for (const t of header.tensors) tensors.set(t.name, array(hostOf(t), t.shape, safetensorsNames[t.dtype]));
  }
  return { identity: { tag: m.tag, key: m.key, parent: m.parent, tokens }, tensors, bytes: bytes.length };
}
