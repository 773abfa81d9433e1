/**
 * Drawing on a real terminal: raw mode, the alternate screen, full-frame redraws, and restoring
 * everything on exit. Rows come ready-made from `render.ts`.
 *
 * @module
 */

import type { Size } from "./render.ts";

/** The terminal operations the console needs (real: {@link denoTerminalIo}; tests: a fake). */
export interface TerminalIo {
  /** Writes all of `bytes` synchronously. */
  write(bytes: Uint8Array): void;
  /** Switches the input to raw mode (true) or back to cooked mode (false). */
  setRaw(on: boolean): void;
  /** Current size in character cells. */
  size(): Size;
}

/** {@link TerminalIo} on Deno.stdin / Deno.stdout. */
export function denoTerminalIo(): TerminalIo {
  return {
    write(bytes) {
      let off = 0;
      while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
    },
    setRaw(on) {
      Deno.stdin.setRaw(on);
    },
    size() {
      try {
        const { columns, rows } = Deno.consoleSize();
        return { cols: columns, rows };
      } catch {
        return { cols: 80, rows: 24 };
      }
    },
  };
}

const ENTER = "\x1b[?1049h" + // alternate screen
  "\x1b[?25l" + // hide cursor
  "\x1b[?7l" + // no autowrap: a full last column never scrolls the screen
  "\x1b[0m\x1b[2J\x1b[H";
const LEAVE = "\x1b[0m\x1b[2J\x1b[?7h\x1b[?25h\x1b[?1049l";

/** Full-screen drawing with idempotent restore. */
export class Screen {
  readonly #io: TerminalIo;
  readonly #enc = new TextEncoder();
  #active = false;
  #last: string[] = [];

  /** @param io the terminal */
  constructor(io: TerminalIo) {
    this.#io = io;
  }

  /** Enters raw mode and the alternate screen, hides the cursor. */
  enter(): void {
    if (this.#active) return;
    this.#io.setRaw(true);
    this.#active = true;
    this.#io.write(this.#enc.encode(ENTER));
    this.#last = [];
  }

  /** Current terminal size. */
  size(): Size {
    return this.#io.size();
  }

  /**
   * Draws a frame: rows that differ from the previous frame are rewritten in place.
   *
   * @param lines exactly one string per terminal row, each at most as wide as the terminal
   */
  draw(lines: string[]): void {
    if (!this.#active) return;
    let out = "";
    if (lines.length !== this.#last.length) {
      out += "\x1b[0m\x1b[2J";
      this.#last = [];
    }
    for (let i = 0; i < lines.length; i++) {
      // Erase the row first, then write it: an erase after a full-width row would take its last
      // character with it (autowrap is off, so the cursor stays on the last column).
      if (this.#last[i] !== lines[i]) out += `\x1b[${i + 1};1H\x1b[0m\x1b[2K${lines[i]}\x1b[0m`;
    }
    this.#last = lines.slice();
    if (out) this.#io.write(this.#enc.encode(out));
  }

  /** Forgets the last frame so the next {@link draw} rewrites every row (after a resize). */
  invalidate(): void {
    this.#last = [];
  }

  /** Leaves the alternate screen, shows the cursor, back to cooked mode. Safe to call twice. */
  restore(): void {
    if (!this.#active) return;
    this.#active = false;
    try {
      this.#io.write(this.#enc.encode(LEAVE));
    } finally {
      try {
        this.#io.setRaw(false);
      } catch {
        // stdin already gone
      }
    }
  }
}
