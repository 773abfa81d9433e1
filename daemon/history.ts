/**
 * The append-only history of requests: one JSON object per line in `<state dir>/history.jsonl`,
 * each write followed by `fsync`. It records what was asked, by whom, the content digest and the
 * outcome — never a secret value or a signature.
 *
 * @module
 */

import type { HistoryEntry } from "../lib/protocol.ts";

/** Where history goes. */
export interface HistorySink {
  /** Appends one entry durably (written and synced before the promise resolves). */
  append(entry: HistoryEntry): Promise<void>;
  /** The newest `limit` entries, oldest first. */
  tail(limit: number): HistoryEntry[];
}

/** Largest history file read back at start-up; older lines beyond it are skipped, not lost. */
const MAX_LOAD_BYTES = 8 * 1024 * 1024;
/** Entries kept in memory for `History` queries. */
const MEMORY_ENTRIES = 2000;

/** {@link HistorySink} on a file. Writes are serialised; a failed write is reported, not hidden. */
export class FileHistory implements HistorySink {
  #file: Deno.FsFile;
  #entries: HistoryEntry[];
  #queue: Promise<void> = Promise.resolve();

  private constructor(file: Deno.FsFile, entries: HistoryEntry[]) {
    this.#file = file;
    this.#entries = entries;
  }

  /**
   * Opens (creating with mode 0600) `<stateDir>/history.jsonl` and loads its tail. Requests that
   * were still open when the daemon last stopped get a closing `expired` entry, so the history
   * never shows a request as pending forever.
   *
   * @throws {Deno.errors.PermissionDenied} or other I/O errors when the state dir is unusable
   */
  static async open(stateDir: string, now: () => number = Date.now): Promise<FileHistory> {
    const path = `${stateDir}/history.jsonl`;
    const entries = await loadTail(path);
    const file = await Deno.open(path, { append: true, create: true, mode: 0o600 });
    const h = new FileHistory(file, entries);
    const open = new Map<string, HistoryEntry>();
    for (const e of entries) {
      if (e.event === "created" || e.event === "pending" || e.event === "approved") {
        open.set(e.id, e);
      } else open.delete(e.id);
    }
    for (const e of open.values()) {
      await h.append({
        ...e,
        at: now(),
        event: "expired",
        message: "the daemon stopped before the request was finished",
      });
    }
    return h;
  }

  append(entry: HistoryEntry): Promise<void> {
    const line = new TextEncoder().encode(JSON.stringify(entry) + "\n");
    const next = this.#queue.then(async () => {
      let off = 0;
      while (off < line.length) off += await this.#file.write(line.subarray(off));
      await this.#file.sync();
      this.#entries.push(entry);
      if (this.#entries.length > MEMORY_ENTRIES) this.#entries.splice(0, MEMORY_ENTRIES / 10);
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  tail(limit: number): HistoryEntry[] {
    return this.#entries.slice(-limit);
  }

  /** Closes the file after pending writes. */
  async close(): Promise<void> {
    await this.#queue;
    this.#file.close();
  }
}

async function loadTail(path: string): Promise<HistoryEntry[]> {
  let data: Uint8Array;
  try {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const start = Math.max(0, size - MAX_LOAD_BYTES);
      await file.seek(start, Deno.SeekMode.Start);
      data = new Uint8Array(size - start);
      let off = 0;
      while (off < data.length) {
        const n = await file.read(data.subarray(off));
        if (n === null) break;
        off += n;
      }
      data = data.subarray(0, off);
      if (start > 0) data = data.subarray(data.indexOf(10) + 1);
    } finally {
      file.close();
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  const entries: HistoryEntry[] = [];
  for (const line of new TextDecoder().decode(data).split("\n")) {
    if (!line) continue;
    try {
      entries.push(JSON.parse(line));
    } catch {
      // A torn last line after a crash: skip it, keep the rest.
    }
  }
  return entries.slice(-MEMORY_ENTRIES);
}
