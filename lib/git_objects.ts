/**
 * A small read-only reader of a git object database, in TypeScript, for processes that may
 * read a repository but not run git (no `--allow-run`): loose objects, packfiles (index v1
 * and v2, OFS_DELTA and REF_DELTA), alternates, linked worktrees, SHA-1 and SHA-256.
 *
 * Formats: gitformat-pack(5) (pack and idx files, deltas), gitrepository-layout(5)
 * (`commondir`, `objects/info/alternates`, loose objects), git's tree object format and
 * tree ordering (git/tree-walk.c, `base_name_compare()` in git/read-cache.c), and the
 * diff rules of git/tree-diff.c and git/diff.c for {@link GitObjectStore.changedFiles}.
 *
 * It reads with `Deno.readFile`, `Deno.open`, `Deno.stat` and `Deno.readDir` (the pack
 * directory listing), so it needs `--allow-read` on the git directory and nothing else.
 * Pack and index files are read by offset, a few KiB at a time; nothing is mapped or read
 * whole except loose objects.
 *
 * @module
 */

import { inflateSync } from "node:zlib";
import type { ChangedFile } from "./protocol.ts";

/** Raised for a missing, unreadable or corrupt object, or a git directory that is not one. */
export class GitObjectError extends Error {
  /**
   * Makes the error.
   *
   * @param message What went wrong, naming the object or file.
   */
  constructor(message: string) {
    super(message);
    this.name = "GitObjectError";
  }
}

/** The four object types. */
export type GitObjectType = "commit" | "tree" | "blob" | "tag";

/** An object's type and its content (without the `type len\0` header). */
export interface GitObject {
  /** The object's type. */
  type: GitObjectType;
  /** The object's bytes, after the header. */
  data: Uint8Array;
}

/** A repository's object format. */
export type ObjectFormat = "sha1" | "sha256";

/** Options of {@link GitObjectStore.open}. */
export interface OpenOptions {
  /**
   * Largest object (inflated, or delta result) that is read, in bytes; larger ones throw
   * {@link GitObjectError}. A guard against decompression bombs in an untrusted repository.
   * Default 64 MiB.
   */
  maxObjectSize?: number;
  /** Object format to assume instead of reading `extensions.objectformat` from `config`. */
  objectFormat?: ObjectFormat;
}

const TYPE_NAMES: (GitObjectType | null)[] = [null, "commit", "tree", "blob", "tag"];
const OBJ_OFS_DELTA = 6;
const OBJ_REF_DELTA = 7;

const EMPTY_TREE: Record<ObjectFormat, string> = {
  sha1: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
  sha256: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
};
const EMPTY_BLOB: Record<ObjectFormat, string> = {
  sha1: "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391",
  sha256: "473a0f4c3be8a93681a267e3b1e9a7dcda1185436fe141f7749120a303721813",
};

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFGITLINK = 0o160000;

const MAX_DELTA_DEPTH = 10_000;
const MAX_ALTERNATE_DEPTH = 5;
const BUCKET_READ_MAX = 256 * 1024;
const CACHE_BYTES = 32 * 1024 * 1024;

const UTF8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const LATIN1 = new TextDecoder("latin1");

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += HEX[b];
  return s;
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function hashLength(format: ObjectFormat): number {
  return format === "sha1" ? 20 : 32;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function dirname(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function resolvePath(base: string, path: string): string {
  return path.startsWith("/") ? path : `${base}/${path}`;
}

async function readTextIfExists(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** Inflates a zlib stream that may be followed by other data; returns output and bytes used. */
function inflate(input: Uint8Array, maxOutput: number): { data: Uint8Array; used: number } {
  const r = inflateSync(input, {
    info: true,
    maxOutputLength: Math.max(maxOutput, 1),
  }) as unknown as {
    buffer: Uint8Array;
    engine: { bytesWritten: number };
  };
  const buf = r.buffer;
  return {
    data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
    used: r.engine.bytesWritten,
  };
}

/** Worst-case zlib output for `size` input bytes (zlib's compressBound) plus slack. */
function deflateBound(size: number): number {
  return size + Math.floor(size / 4096) + Math.floor(size / 16384) +
    Math.floor(size / 33554432) + 13 + 64;
}

/** An open file read at offsets; reads are serialised because they share one seek pointer. */
class RandomAccessFile {
  #queue: Promise<unknown> = Promise.resolve();
  private constructor(readonly path: string, readonly file: Deno.FsFile, readonly size: number) {}

  static async open(path: string): Promise<RandomAccessFile> {
    const file = await Deno.open(path, { read: true });
    try {
      const st = await file.stat();
      return new RandomAccessFile(path, file, st.size);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Up to `length` bytes at `offset` (fewer at the end of the file). */
  readAt(offset: number, length: number): Promise<Uint8Array> {
    const task = this.#queue.then(async () => {
      const len = Math.max(0, Math.min(length, this.size - offset));
      const buf = new Uint8Array(len);
      await this.file.seek(offset, Deno.SeekMode.Start);
      let n = 0;
      while (n < len) {
        const r = await this.file.read(buf.subarray(n));
        if (r === null) break;
        n += r;
      }
      return buf.subarray(0, n);
    });
    this.#queue = task.catch(() => {});
    return task;
  }

  close(): void {
    try {
      this.file.close();
    } catch {
      // already closed
    }
  }
}

/** A small LRU of resolved pack objects, bounded by total bytes. */
class ObjectCache {
  #map = new Map<string, GitObject>();
  #bytes = 0;
  get(key: string): GitObject | undefined {
    const v = this.#map.get(key);
    if (v) {
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }
  set(key: string, value: GitObject): void {
    if (value.data.length > CACHE_BYTES / 8 || this.#map.has(key)) return;
    this.#map.set(key, value);
    this.#bytes += value.data.length;
    for (const [k, v] of this.#map) {
      if (this.#bytes <= CACHE_BYTES) break;
      this.#map.delete(k);
      this.#bytes -= v.data.length;
    }
  }
}

/** Resolves REF_DELTA bases anywhere in the store. */
type BaseResolver = (oid: string, depth: number) => Promise<GitObject | null>;

/** One `pack-*.idx` / `pack-*.pack` pair, opened on first use. */
class Pack {
  #idx: RandomAccessFile | null = null;
  #pack: RandomAccessFile | null = null;
  #ready: Promise<void> | null = null;
  #fanout = new Uint32Array(256);
  #version = 2;
  #count = 0;
  #buckets = new Map<number, Uint8Array>();

  constructor(
    readonly idxPath: string,
    readonly packPath: string,
    readonly hashLen: number,
    readonly cache: ObjectCache,
    readonly maxObjectSize: number,
  ) {}

  close(): void {
    this.#idx?.close();
    this.#pack?.close();
    this.#idx = this.#pack = null;
    this.#ready = null;
  }

  #corrupt(what: string): GitObjectError {
    return new GitObjectError(`${this.packPath}: ${what}`);
  }

  #open(): Promise<void> {
    this.#ready ??= (async () => {
      const idx = await RandomAccessFile.open(this.idxPath);
      this.#idx = idx;
      const head = await idx.readAt(0, 8 + 1024);
      const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
      let fanoutAt = 0;
      if (head.length >= 8 && view.getUint32(0) === 0xff744f63) {
        this.#version = view.getUint32(4);
        if (this.#version !== 2) throw this.#corrupt(`unsupported index version ${this.#version}`);
        fanoutAt = 8;
      } else {
        this.#version = 1;
      }
      if (head.length < fanoutAt + 1024) throw this.#corrupt("index too short");
      for (let i = 0; i < 256; i++) this.#fanout[i] = view.getUint32(fanoutAt + 4 * i);
      this.#count = this.#fanout[255];
      const h = this.hashLen;
      const want = this.#version === 2
        ? 8 + 1024 + this.#count * (h + 8) + 2 * h
        : 1024 + this.#count * (h + 4) + 2 * h;
      if (idx.size < want) throw this.#corrupt("index too short");
      const pack = await RandomAccessFile.open(this.packPath);
      this.#pack = pack;
      const ph = await pack.readAt(0, 12);
      const pv = new DataView(ph.buffer, ph.byteOffset, ph.byteLength);
      if (ph.length < 12 || pv.getUint32(0) !== 0x5041434b) throw this.#corrupt("not a pack");
      if (pv.getUint32(8) !== this.#count) throw this.#corrupt("pack and index disagree");
    })();
    this.#ready.catch(() => this.close());
    return this.#ready;
  }

  /** Offset of `oid` in the pack, or null when this pack does not have it. */
  async find(oid: Uint8Array): Promise<number | null> {
    await this.#open();
    const idx = this.#idx!;
    const h = this.hashLen;
    const first = oid[0];
    const lo = first === 0 ? 0 : this.#fanout[first - 1];
    const hi = this.#fanout[first];
    if (hi <= lo) return null;
    const v2 = this.#version === 2;
    const entry = v2 ? h : h + 4;
    const skip = v2 ? 0 : 4;
    const tableAt = v2 ? 8 + 1024 : 1024;
    // Narrow [a, b) by single reads until the window is small, then read it at once.
    let a = lo;
    let b = hi;
    let window = this.#buckets.get(first);
    if (!window) {
      while ((b - a) * entry > BUCKET_READ_MAX) {
        const mid = (a + b) >>> 1;
        const e = await idx.readAt(tableAt + mid * entry, entry);
        if (e.length !== entry) throw this.#corrupt("index truncated");
        const c = compareBytes(e.subarray(skip), oid);
        if (c === 0) {
          if (!v2) return new DataView(e.buffer, e.byteOffset).getUint32(0);
          return await this.#offsetOf(mid);
        }
        if (c < 0) a = mid + 1;
        else b = mid;
      }
      window = await idx.readAt(tableAt + a * entry, (b - a) * entry);
      if (window.length !== (b - a) * entry) throw this.#corrupt("index truncated");
      if (a === lo && b === hi) this.#buckets.set(first, window);
    }
    let l = 0;
    let r = b - a;
    while (l < r) {
      const mid = (l + r) >>> 1;
      const c = compareBytes(window.subarray(mid * entry + skip, mid * entry + skip + h), oid);
      if (c === 0) {
        if (!v2) return new DataView(window.buffer, window.byteOffset).getUint32(mid * entry);
        return await this.#offsetOf(a + mid);
      }
      if (c < 0) l = mid + 1;
      else r = mid;
    }
    return null;
  }

  async #offsetOf(i: number): Promise<number> {
    const idx = this.#idx!;
    const n = this.#count;
    const h = this.hashLen;
    const offsetsAt = 8 + 1024 + n * (h + 4);
    const b = await idx.readAt(offsetsAt + 4 * i, 4);
    if (b.length !== 4) throw this.#corrupt("index truncated");
    const off = new DataView(b.buffer, b.byteOffset).getUint32(0);
    if ((off & 0x80000000) === 0) return off;
    const large = await idx.readAt(offsetsAt + 4 * n + 8 * (off & 0x7fffffff), 8);
    if (large.length !== 8) throw this.#corrupt("index truncated");
    const big = new DataView(large.buffer, large.byteOffset).getBigUint64(0);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw this.#corrupt("offset too large");
    return Number(big);
  }

  /** The object at `offset`, with deltas resolved. */
  async readAt(offset: number, resolve: BaseResolver, depth = 0): Promise<GitObject> {
    await this.#open();
    const chain: { offset: number; delta: Uint8Array }[] = [];
    let base: GitObject | null = null;
    let off = offset;
    while (!base) {
      if (depth + chain.length > MAX_DELTA_DEPTH) throw this.#corrupt("delta chain too long");
      const cached = this.cache.get(`${this.packPath}\0${off}`);
      if (cached) {
        base = cached;
        break;
      }
      const e = await this.#entry(off);
      if (e.type >= 1 && e.type <= 4) {
        base = { type: TYPE_NAMES[e.type]!, data: e.data };
        this.cache.set(`${this.packPath}\0${off}`, base);
      } else if (e.type === OBJ_OFS_DELTA) {
        chain.push({ offset: off, delta: e.data });
        off = e.baseOffset!;
      } else {
        chain.push({ offset: off, delta: e.data });
        base = await resolve(e.baseOid!, depth + chain.length);
        if (!base) throw this.#corrupt(`delta base ${e.baseOid} missing`);
      }
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      base = { type: base.type, data: this.#applyDelta(base.data, chain[i].delta) };
      this.cache.set(`${this.packPath}\0${chain[i].offset}`, base);
    }
    return base;
  }

  /** Parses the entry header at `offset` and inflates its data (a delta is not applied). */
  async #entry(offset: number): Promise<{
    type: number;
    data: Uint8Array;
    baseOffset?: number;
    baseOid?: string;
  }> {
    const pack = this.#pack!;
    const end = pack.size - this.hashLen;
    if (offset < 12 || offset >= end) throw this.#corrupt(`bad object offset ${offset}`);
    let buf = await pack.readAt(offset, Math.min(end - offset, 64 + 4096));
    let p = 0;
    const next = (): number => {
      if (p >= buf.length) throw this.#corrupt(`truncated entry at ${offset}`);
      return buf[p++];
    };
    let c = next();
    const type = (c >> 4) & 7;
    let size = c & 15;
    let shift = 4;
    while (c & 0x80) {
      c = next();
      size += (c & 0x7f) * 2 ** shift;
      shift += 7;
      if (shift > 53) throw this.#corrupt(`bad size at ${offset}`);
    }
    if (size > this.maxObjectSize) {
      throw new GitObjectError(`object at ${offset} in ${this.packPath} is too large (${size})`);
    }
    let baseOffset: number | undefined;
    let baseOid: string | undefined;
    if (type === OBJ_OFS_DELTA) {
      c = next();
      let rel = c & 0x7f;
      while (c & 0x80) {
        c = next();
        rel = (rel + 1) * 128 + (c & 0x7f);
        if (rel > Number.MAX_SAFE_INTEGER / 256) throw this.#corrupt(`bad base at ${offset}`);
      }
      baseOffset = offset - rel;
      if (rel <= 0 || baseOffset < 12) throw this.#corrupt(`bad delta base at ${offset}`);
    } else if (type === OBJ_REF_DELTA) {
      if (p + this.hashLen > buf.length) throw this.#corrupt(`truncated entry at ${offset}`);
      baseOid = toHex(buf.subarray(p, p + this.hashLen));
      p += this.hashLen;
    } else if (type < 1 || type > 4) {
      throw this.#corrupt(`bad object type ${type} at ${offset}`);
    }
    const start = offset + p;
    let want = Math.min(end - start, deflateBound(size));
    if (want > buf.length - p) {
      buf = await pack.readAt(start, want);
      p = 0;
    }
    let out: Uint8Array;
    try {
      out = inflate(buf.subarray(p, p + want), size).data;
    } catch (e) {
      // A stream longer than zlib's own bound: retry once with everything up to the end.
      const more = Math.min(end - start, this.maxObjectSize + (1 << 20));
      if (more <= want) throw this.#corrupt(`bad data at ${offset}: ${errorText(e)}`);
      want = more;
      try {
        out = inflate(await pack.readAt(start, want), size).data;
      } catch (e2) {
        throw this.#corrupt(`bad data at ${offset}: ${errorText(e2)}`);
      }
    }
    if (out.length !== size) throw this.#corrupt(`size mismatch at ${offset}`);
    return { type, data: out, baseOffset, baseOid };
  }

  /** Applies a git delta (gitformat-pack(5), "Deltified representation"). */
  #applyDelta(base: Uint8Array, delta: Uint8Array): Uint8Array {
    let p = 0;
    const varint = (): number => {
      let v = 0;
      let shift = 0;
      let c: number;
      do {
        if (p >= delta.length || shift > 49) throw this.#corrupt("bad delta header");
        c = delta[p++];
        v += (c & 0x7f) * 2 ** shift;
        shift += 7;
      } while (c & 0x80);
      return v;
    };
    if (varint() !== base.length) throw this.#corrupt("delta base size mismatch");
    const size = varint();
    if (size > this.maxObjectSize) throw new GitObjectError(`delta result too large (${size})`);
    const out = new Uint8Array(size);
    let q = 0;
    while (p < delta.length) {
      const op = delta[p++];
      if (op & 0x80) {
        let off = 0;
        let len = 0;
        for (let i = 0; i < 4; i++) {
          if (op & (1 << i)) off += delta[p++] * 2 ** (8 * i);
        }
        for (let i = 0; i < 3; i++) {
          if (op & (0x10 << i)) len += delta[p++] * 2 ** (8 * i);
        }
        if (len === 0) len = 0x10000;
        if (p > delta.length || off + len > base.length || q + len > size) {
          throw this.#corrupt("bad delta copy");
        }
        out.set(base.subarray(off, off + len), q);
        q += len;
      } else if (op !== 0) {
        if (p + op > delta.length || q + op > size) throw this.#corrupt("bad delta insert");
        out.set(delta.subarray(p, p + op), q);
        p += op;
        q += op;
      } else {
        throw this.#corrupt("reserved delta opcode 0");
      }
    }
    if (q !== size) throw this.#corrupt("delta result size mismatch");
    return out;
  }
}

/** An `objects` directory: its loose objects and its packs. */
class ObjectDir {
  packs: Pack[] = [];
  #known = new Set<string>();
  #first: Promise<void> | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  constructor(
    readonly path: string,
    readonly hashLen: () => number,
    readonly cache: ObjectCache,
    readonly maxObjectSize: number,
  ) {}

  /** Lists the packs once. */
  ensureScanned(): Promise<void> {
    this.#first ??= this.rescan();
    return this.#first;
  }

  /** Adds packs that appeared since the last listing (one listing at a time). */
  rescan(): Promise<void> {
    const task = this.#queue.then(() => this.#scan());
    this.#queue = task.catch(() => {});
    return task;
  }

  async #scan(): Promise<void> {
    const names = new Set<string>();
    try {
      for await (const e of Deno.readDir(`${this.path}/pack`)) names.add(e.name);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    const found: Pack[] = [];
    for (const name of [...names].sort()) {
      if (!name.endsWith(".idx")) continue;
      const stem = name.slice(0, -4);
      if (!names.has(`${stem}.pack`) || this.#known.has(stem)) continue;
      this.#known.add(stem);
      found.push(
        new Pack(
          `${this.path}/pack/${name}`,
          `${this.path}/pack/${stem}.pack`,
          this.hashLen(),
          this.cache,
          this.maxObjectSize,
        ),
      );
    }
    this.packs.push(...found);
  }
}

/** One entry of a tree object. */
interface TreeEntry {
  mode: number;
  name: Uint8Array;
  oid: string;
}

/** git's `canon_mode()`: regular files become 100644/100755; anything odd a gitlink. */
function canonMode(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return S_IFREG | (mode & 0o100 ? 0o755 : 0o644);
    case S_IFLNK:
      return S_IFLNK;
    case S_IFDIR:
      return S_IFDIR;
    default:
      return S_IFGITLINK;
  }
}

function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

/** git's `base_name_compare()`: a directory sorts as if its name ended in "/". */
function baseNameCompare(a: TreeEntry, b: TreeEntry): number {
  const n = Math.min(a.name.length, b.name.length);
  for (let i = 0; i < n; i++) if (a.name[i] !== b.name[i]) return a.name[i] - b.name[i];
  const ca = a.name.length > n ? a.name[n] : isDir(a.mode) ? 0x2f : 0;
  const cb = b.name.length > n ? b.name[n] : isDir(b.mode) ? 0x2f : 0;
  return ca - cb;
}

function parseTree(data: Uint8Array, hashLen: number, oid: string): TreeEntry[] {
  const entries: TreeEntry[] = [];
  let p = 0;
  while (p < data.length) {
    const sp = data.indexOf(0x20, p);
    const nul = sp < 0 ? -1 : data.indexOf(0, sp + 1);
    if (sp < 0 || nul < 0 || nul + 1 + hashLen > data.length || sp === p) {
      throw new GitObjectError(`corrupt tree ${oid}`);
    }
    let mode = 0;
    for (let i = p; i < sp; i++) {
      const d = data[i] - 0x30;
      if (d < 0 || d > 7) throw new GitObjectError(`corrupt tree ${oid}: bad mode`);
      mode = mode * 8 + d;
    }
    entries.push({
      mode: canonMode(mode),
      name: data.subarray(sp + 1, nul),
      oid: toHex(data.subarray(nul + 1, nul + 1 + hashLen)),
    });
    p = nul + 1 + hashLen;
  }
  return entries;
}

function joinPath(prefix: Uint8Array, name: Uint8Array): Uint8Array {
  const out = new Uint8Array(prefix.length + name.length + (prefix.length ? 1 : 0));
  out.set(prefix);
  if (prefix.length) out[prefix.length] = 0x2f;
  out.set(name, out.length - name.length);
  return out;
}

/** Reads `extensions.objectformat` from a git config file. */
function configObjectFormat(text: string): ObjectFormat | null {
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const sec = /^\[\s*([A-Za-z0-9.-]+)\s*(?:"[^"]*"\s*)?\]/.exec(line);
    if (sec) {
      section = sec[1].toLowerCase();
      continue;
    }
    if (section !== "extensions") continue;
    const kv = /^objectformat\s*=\s*"?([A-Za-z0-9]+)"?\s*(?:[#;].*)?$/i.exec(line);
    if (kv) {
      const v = kv[1].toLowerCase();
      if (v === "sha1" || v === "sha256") return v;
      throw new GitObjectError(`unknown extensions.objectformat "${kv[1]}"`);
    }
  }
  return null;
}

/**
 * Read access to one repository's objects.
 *
 * Lookup order: for the repository's `objects` directory and then each alternate, its packs
 * and then its loose objects. When an object is not found, the pack directories are listed
 * again once (a concurrent `git gc` may have packed it) before giving up.
 */
export class GitObjectStore {
  #dirs: ObjectDir[];
  #format: ObjectFormat | null;

  private constructor(
    /**
     * The git directory the objects are read from, symlinks resolved (for a linked
     * worktree, the main repository's git directory).
     */
    readonly commonDir: string,
    dirs: ObjectDir[],
    format: ObjectFormat | null,
    /** Largest object read, in bytes (see {@link OpenOptions.maxObjectSize}). */
    readonly maxObjectSize: number,
  ) {
    this.#dirs = dirs;
    this.#format = format;
  }

  /**
   * Opens the object database of the repository whose git directory is `gitDir`.
   *
   * `gitDir` may be a repository's `.git` directory, a bare repository, a linked worktree's
   * git directory (`.git/worktrees/<name>`, whose `commondir` file leads to the objects), or
   * a `.git` file holding `gitdir: <path>`. Alternates (`objects/info/alternates`) are
   * followed up to 5 levels deep, as git does. The object format comes from
   * `extensions.objectformat` in `config`; when `config` cannot be read, from the length of
   * the first id asked for.
   *
   * @throws {GitObjectError} When `gitDir` has no `objects` directory or the config names an
   *   unknown object format.
   */
  static async open(gitDir: string, opts: OpenOptions = {}): Promise<GitObjectStore> {
    try {
      return await GitObjectStore.#open(gitDir, opts);
    } catch (e) {
      if (e instanceof GitObjectError) throw e;
      throw new GitObjectError(`${gitDir}: ${errorText(e)}`);
    }
  }

  static async #open(gitDir: string, opts: OpenOptions): Promise<GitObjectStore> {
    let dir = gitDir.replace(/(.)\/+$/, "$1");
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(dir);
    } catch (e) {
      throw new GitObjectError(`${gitDir}: ${errorText(e)}`);
    }
    if (st.isFile) {
      const m = /^gitdir: (.*)$/m.exec(await Deno.readTextFile(dir));
      if (!m) throw new GitObjectError(`${gitDir}: not a git directory or gitdir file`);
      dir = resolvePath(dirname(dir), m[1].trim());
    }
    const common = (await readTextIfExists(`${dir}/commondir`))?.trim();
    const commonDir = await Deno.realPath(common ? resolvePath(dir, common) : dir);
    let format = opts.objectFormat ?? null;
    if (!format) {
      let config: string | null = null;
      try {
        config = await readTextIfExists(`${commonDir}/config`);
      } catch {
        config = null; // unreadable: decide by id length
      }
      format = config === null ? null : (configObjectFormat(config) ?? "sha1");
    }
    const objects = `${commonDir}/objects`;
    try {
      if (!(await Deno.stat(objects)).isDirectory) throw new Error("not a directory");
    } catch (e) {
      throw new GitObjectError(`${objects}: ${errorText(e)}`);
    }
    const dirs: ObjectDir[] = [];
    const seen = new Set<string>();
    const cache = new ObjectCache();
    const maxObjectSize = opts.maxObjectSize ?? 64 * 1024 * 1024;
    // Set once the format is known (at the latest by the first id asked for).
    const box: { store?: GitObjectStore } = {};
    const hashLen = () => hashLength(box.store!.#format!);
    const addDir = async (path: string, depth: number) => {
      if (seen.has(path) || depth > MAX_ALTERNATE_DEPTH) return;
      seen.add(path);
      dirs.push(new ObjectDir(path, hashLen, cache, maxObjectSize));
      const alt = await readTextIfExists(`${path}/info/alternates`).catch(() => null);
      for (let line of alt?.split("\n") ?? []) {
        if (line.startsWith("#") || line.trim() === "") continue;
        line = line.replace(/\r$/, "");
        if (line.startsWith('"')) line = unquoteC(line);
        await addDir(resolvePath(path, line).replace(/(.)\/+$/, "$1"), depth + 1);
      }
    };
    await addDir(objects, 0);
    box.store = new GitObjectStore(commonDir, dirs, format, maxObjectSize);
    return box.store;
  }

  /** The repository's object format, or null while it is unknown (unreadable config). */
  get objectFormat(): ObjectFormat | null {
    return this.#format;
  }

  /** Closes the pack files this store opened. The store can be used again afterwards. */
  close(): void {
    for (const d of this.#dirs) for (const p of d.packs) p.close();
  }

  #checkOid(oid: string): string {
    const id = oid.toLowerCase();
    if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(id)) {
      throw new GitObjectError(`not an object id: ${JSON.stringify(oid)}`);
    }
    const format: ObjectFormat = id.length === 40 ? "sha1" : "sha256";
    this.#format ??= format;
    if (format !== this.#format) {
      throw new GitObjectError(`${oid} is not a ${this.#format} object id`);
    }
    return id;
  }

  /**
   * Reads object `oid` (40 or 64 hex digits, matching the repository's format).
   *
   * The empty tree and the empty blob are known without being stored, as in git.
   * The object's hash is not verified; its header (`type len\0`) is.
   *
   * @throws {GitObjectError} When the object is missing, corrupt, larger than
   *   `maxObjectSize`, or `oid` is not an id of this repository's format.
   */
  async read(oid: string): Promise<GitObject> {
    const id = this.#checkOid(oid);
    const obj = await this.#find(id, 0);
    if (obj) return obj;
    const format = this.#format!;
    if (id === EMPTY_TREE[format]) return { type: "tree", data: new Uint8Array(0) };
    if (id === EMPTY_BLOB[format]) return { type: "blob", data: new Uint8Array(0) };
    throw new GitObjectError(`object ${id} not found`);
  }

  async #find(id: string, depth: number): Promise<GitObject | null> {
    if (depth > MAX_DELTA_DEPTH) throw new GitObjectError(`delta chain too long at ${id}`);
    const bytes = fromHex(id);
    const resolve: BaseResolver = (base, d) => this.#find(base, d);
    for (let attempt = 0; attempt < 2; attempt++) {
      // Not found: a concurrent repack may have moved it into a new pack.
      if (attempt === 1) await Promise.all(this.#dirs.map((d) => d.rescan()));
      for (const dir of this.#dirs) {
        await dir.ensureScanned();
        for (const pack of dir.packs) {
          let offset: number | null;
          try {
            offset = await pack.find(bytes);
          } catch (e) {
            if (e instanceof Deno.errors.NotFound) continue; // removed by a repack
            if (e instanceof GitObjectError) throw e;
            throw new GitObjectError(`${pack.idxPath}: ${errorText(e)}`);
          }
          if (offset !== null) {
            try {
              return await pack.readAt(offset, resolve, depth);
            } catch (e) {
              if (e instanceof GitObjectError) throw e;
              throw new GitObjectError(`${pack.packPath}: ${errorText(e)}`);
            }
          }
        }
        const loose = await this.#readLoose(dir.path, id);
        if (loose) return loose;
      }
    }
    return null;
  }

  async #readLoose(objects: string, id: string): Promise<GitObject | null> {
    const path = `${objects}/${id.slice(0, 2)}/${id.slice(2)}`;
    let raw: Uint8Array;
    try {
      raw = await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
        return null;
      }
      throw new GitObjectError(`${path}: ${errorText(e)}`);
    }
    let data: Uint8Array;
    try {
      data = inflate(raw, this.maxObjectSize + 64).data;
    } catch (e) {
      throw new GitObjectError(`corrupt loose object ${id}: ${errorText(e)}`);
    }
    const nul = data.indexOf(0);
    const header = nul < 0 ? "" : LATIN1.decode(data.subarray(0, nul));
    const m = /^(commit|tree|blob|tag) (0|[1-9][0-9]*)$/.exec(header);
    if (!m || Number(m[2]) !== data.length - nul - 1) {
      throw new GitObjectError(`corrupt loose object ${id}: bad header`);
    }
    return { type: m[1] as GitObjectType, data: data.subarray(nul + 1) };
  }

  async #readTree(oid: string): Promise<TreeEntry[]> {
    const obj = await this.read(oid);
    if (obj.type !== "tree") throw new GitObjectError(`${oid} is a ${obj.type}, not a tree`);
    return parseTree(obj.data, hashLength(this.#format!), oid);
  }

  /** The tree of commit `oid`. */
  async #commitTree(oid: string): Promise<string> {
    const obj = await this.read(oid);
    if (obj.type !== "commit") throw new GitObjectError(`${oid} is a ${obj.type}, not a commit`);
    const m = /^tree ([0-9a-f]{40}|[0-9a-f]{64})\n/.exec(LATIN1.decode(obj.data.subarray(0, 80)));
    if (!m) throw new GitObjectError(`corrupt commit ${oid}: no tree`);
    return m[1];
  }

  /**
   * The files that differ between `tree` and the tree of commit `parent`, like
   * `git diff-tree -r --name-status <parent> <tree>` (no rename detection).
   *
   * Statuses: `A` added, `D` deleted, `M` content or executable bit changed, `T` type changed
   * (regular file, symlink and submodule). A path that turns from a file into a directory
   * (or back) is a `D` of the one and an `A` of every file under the other, as in git.
   * Order is git's: a walk of both trees in tree order (a directory sorts as its name
   * followed by "/"). Identical subtrees are skipped by id without being read. Paths are the
   * raw bytes decoded as UTF-8 with replacement characters.
   *
   * @param tree The new tree (the payload's `tree`).
   * @param parent The first parent commit, or null for a root commit (compare with the
   *   empty tree).
   * @param opts.limit Most entries returned (default 1000); `truncated` tells when more
   *   existed.
   * @throws {GitObjectError} When an object needed is missing or corrupt, or `parent` is not
   *   a commit or `tree` not a tree.
   */
  async changedFiles(
    tree: string,
    parent: string | null,
    opts: { limit?: number } = {},
  ): Promise<{ files: ChangedFile[]; truncated: boolean }> {
    const limit = opts.limit ?? 1000;
    const newTree = this.#checkOid(tree);
    const oldTree = parent === null ? null : await this.#commitTree(this.#checkOid(parent));
    const files: ChangedFile[] = [];
    let truncated = false;

    const emit = (status: string, path: Uint8Array): boolean => {
      if (files.length >= limit) {
        truncated = true;
        return false;
      }
      files.push({ status, path: UTF8.decode(path) });
      return true;
    };
    // Each returns false once the limit is hit.
    const one = async (status: "A" | "D", e: TreeEntry, path: Uint8Array): Promise<boolean> => {
      if (!isDir(e.mode)) return emit(status, path);
      return status === "A" ? await walk(null, e.oid, path) : await walk(e.oid, null, path);
    };
    const walk = async (a: string | null, b: string | null, prefix: Uint8Array) => {
      if (a === b) return true;
      const ea = a === null ? [] : await this.#readTree(a);
      const eb = b === null ? [] : await this.#readTree(b);
      let i = 0;
      let j = 0;
      while (i < ea.length || j < eb.length) {
        const c = i >= ea.length ? 1 : j >= eb.length ? -1 : baseNameCompare(ea[i], eb[j]);
        if (c < 0) {
          if (!await one("D", ea[i], joinPath(prefix, ea[i].name))) return false;
          i++;
        } else if (c > 0) {
          if (!await one("A", eb[j], joinPath(prefix, eb[j].name))) return false;
          j++;
        } else {
          const x = ea[i++];
          const y = eb[j++];
          if (x.oid === y.oid && x.mode === y.mode) continue;
          const path = joinPath(prefix, x.name);
          if (isDir(x.mode)) {
            if (!await walk(x.oid, y.oid, path)) return false;
          } else {
            const status = (x.mode & S_IFMT) !== (y.mode & S_IFMT) ? "T" : "M";
            if (!emit(status, path)) return false;
          }
        }
      }
      return true;
    };
    await walk(oldTree, newTree, new Uint8Array(0));
    return { files, truncated };
  }
}

/** Undoes git's C-style quoting of a path (as in `objects/info/alternates`). */
function unquoteC(s: string): string {
  const m = /^"(.*)"$/.exec(s);
  if (!m) return s;
  const bytes: number[] = [];
  const body = new TextEncoder().encode(m[1]);
  const esc: Record<string, number> = {
    a: 7,
    b: 8,
    f: 12,
    n: 10,
    r: 13,
    t: 9,
    v: 11,
    "\\": 92,
    '"': 34,
  };
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== 92 || i + 1 >= body.length) {
      bytes.push(body[i]);
      continue;
    }
    const c = String.fromCharCode(body[++i]);
    if (c in esc) bytes.push(esc[c]);
    else if (/[0-7]/.test(c) && i + 2 < body.length) {
      bytes.push(parseInt(String.fromCharCode(body[i], body[i + 1], body[i + 2]), 8));
      i += 2;
    } else bytes.push(92, body[i]);
  }
  return UTF8.decode(new Uint8Array(bytes));
}
