/**
 * Terminal text layout for the console: display width of (already escaped) text, styled segments,
 * wrapping and padding. Pure functions, no I/O.
 *
 * All text given to these functions must already be escaped with `lib/sanitize.ts` (or be our own
 * constant text): they measure and cut, they do not sanitise.
 *
 * @module
 */

import { escapeLine } from "../lib/sanitize.ts";

/** Visual styles the renderer knows; mapped to SGR sequences only at the very end. */
export type Style =
  | "plain"
  | "title"
  | "heading"
  | "label"
  | "verified"
  | "reported"
  | "warn"
  | "error"
  | "ok"
  | "dim"
  | "key"
  | "selected"
  | "phrase";

/** A run of text in one style. `text` is escaped (printable characters only). */
export interface Seg {
  text: string;
  style: Style;
}

/**
 * A logical line: segments, plus the prefix repeated at the start of every wrapped continuation
 * row (indentation or a content gutter).
 */
export interface Line {
  segs: Seg[];
  cont?: Seg[];
}

/** Shorthand for a segment. */
export function seg(text: string, style: Style = "plain"): Seg {
  return { text, style };
}

const WIDE_RANGES: [number, number][] = [
  [0x1100, 0x115f],
  [0x231a, 0x231b],
  [0x2329, 0x232a],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xa960, 0xa97f],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe10, 0xfe19],
  [0xfe30, 0xfe6f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x16fe0, 0x18d08],
  [0x1b000, 0x1b2ff],
  [0x1f300, 0x1f64f],
  [0x1f900, 0x1f9ff],
  [0x20000, 0x3fffd],
];
const EMOJI_PRESENTATION = /\p{Emoji_Presentation}/u;
const ZERO_WIDTH = /[\p{Mn}\p{Me}]/u;

/**
 * Columns a single code point takes in a terminal: 0 for combining marks, 2 for East Asian wide
 * and emoji-presentation characters, 1 otherwise. An approximation of wcwidth for escaped text.
 */
export function charWidth(ch: string): number {
  const cp = ch.codePointAt(0)!;
  if (cp < 0x300) return 1;
  if (ZERO_WIDTH.test(ch)) return 0;
  for (const [lo, hi] of WIDE_RANGES) {
    if (cp >= lo && cp <= hi) return 2;
  }
  return EMOJI_PRESENTATION.test(ch) ? 2 : 1;
}

/** Columns that escaped text `s` takes. */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += charWidth(ch);
  return w;
}

/**
 * Splits escaped text into units that must not be cut: one escape such as `\x1b` or `\u{202e}`
 * (a backslash in escaped text always starts one), or a base character with its combining marks.
 */
const UNIT = /\\(?:x[0-9a-f]{2}|u\{[0-9a-f]+\}|[ntr\\])|\P{M}\p{M}*|\p{M}/uy;

interface Cell {
  text: string;
  width: number;
  style: Style;
}

function cells(segs: Seg[]): Cell[] {
  const out: Cell[] = [];
  for (const s of segs) {
    const t = s.text;
    let i = 0;
    while (i < t.length) {
      const c = t.charCodeAt(i);
      // Fast path: printable ASCII other than the backslash is one unit of one column, unless a
      // combining mark follows it.
      if (c >= 0x20 && c < 0x7f && c !== 0x5c) {
        const next = i + 1 < t.length ? t.charCodeAt(i + 1) : 0;
        if (next < 0x300) {
          out.push({ text: t[i], width: 1, style: s.style });
          i++;
          continue;
        }
      }
      UNIT.lastIndex = i;
      const m = UNIT.exec(t);
      if (!m) { // cannot happen: every code point matches one alternative
        out.push({ text: t.slice(i), width: displayWidth(t.slice(i)), style: s.style });
        break;
      }
      out.push({ text: m[0], width: displayWidth(m[0]), style: s.style });
      i += m[0].length;
    }
  }
  return out;
}

function joinCells(cs: Cell[]): Seg[] {
  const out: Seg[] = [];
  for (const c of cs) {
    const last = out.at(-1);
    if (last && last.style === c.style) last.text += c.text;
    else out.push({ text: c.text, style: c.style });
  }
  return out;
}

/** Display width of a row of segments. */
export function segsWidth(segs: Seg[]): number {
  let w = 0;
  for (const s of segs) w += displayWidth(s.text);
  return w;
}

/**
 * Wraps a logical line to rows of at most `width` columns. Breaks after a space when one is
 * close enough, otherwise anywhere between units; escapes are never split. Nothing is dropped:
 * every unit of the input appears in exactly one output row.
 *
 * @param line the logical line
 * @param width columns available (at least 1)
 * @returns one or more rows of segments
 */
export function wrapLine(line: Line, width: number): Seg[][] {
  width = Math.max(1, width);
  if (segsWidth(line.segs) <= width) return [line.segs.filter((s) => s.text !== "")];
  const all = cells(line.segs);
  let contCells = cells(line.cont ?? []);
  let contWidth = contCells.reduce((a, c) => a + c.width, 0);
  if (contWidth > width / 2) {
    contCells = [];
    contWidth = 0;
  }
  const rows: Seg[][] = [];
  let row: Cell[] = [];
  let rowWidth = 0;
  let prefixLen = 0; // cells of the continuation prefix at the start of `row`
  for (const c of all) {
    if (rowWidth + c.width > width && row.length > prefixLen) {
      // Row full: break after the last space among the last 20 cells when the carried-over
      // word still fits on the next row, else right here.
      let cut = row.length;
      for (let j = row.length - 1; j > prefixLen && j >= row.length - 20; j--) {
        if (row[j].text === " ") {
          const carryWidth = row.slice(j + 1).reduce((a, x) => a + x.width, 0);
          if (contWidth + carryWidth + c.width <= width) cut = j + 1;
          break;
        }
      }
      const carry = row.slice(cut);
      rows.push(joinCells(row.slice(0, cut)));
      row = [...contCells, ...carry];
      prefixLen = contCells.length;
      rowWidth = row.reduce((a, x) => a + x.width, 0);
    }
    row.push(c);
    rowWidth += c.width;
  }
  rows.push(joinCells(row));
  return rows;
}

/**
 * Cuts a row to `width` columns; when something is cut, the last column(s) show `...` (dim) so
 * the cut is visible.
 */
export function fitRow(segs: Seg[], width: number): Seg[] {
  if (segsWidth(segs) <= width) return segs;
  const marker = "...";
  const room = Math.max(0, width - marker.length);
  const out: Cell[] = [];
  let w = 0;
  for (const c of cells(segs)) {
    if (w + c.width > room) break;
    out.push(c);
    w += c.width;
  }
  return [...joinCells(out), seg(marker.slice(0, width), "dim")];
}

/** Pads a row with spaces (style `fill`) to exactly `width` columns (cutting first if needed). */
export function padRow(segs: Seg[], width: number, fill: Style = "plain"): Seg[] {
  const fitted = fitRow(segs, width);
  const w = segsWidth(fitted);
  return w < width ? [...fitted, seg(" ".repeat(width - w), fill)] : fitted;
}

/** Escaped text padded or cut to exactly `width` columns, as a plain string. */
export function cell(text: string, width: number): string {
  return padRow([seg(text)], width).map((s) => s.text).join("");
}

const SGR: Record<Style, string> = {
  plain: "",
  title: "\x1b[1;7m",
  heading: "\x1b[1;4m",
  label: "\x1b[1m",
  verified: "\x1b[1;32m",
  reported: "\x1b[1;33m",
  warn: "\x1b[1;33m",
  error: "\x1b[1;31m",
  ok: "\x1b[1;32m",
  dim: "\x1b[2m",
  key: "\x1b[1;36m",
  selected: "\x1b[7m",
  phrase: "\x1b[1;35m",
};

/**
 * Characters that must never reach the terminal from a segment. Segments hold escaped text, so
 * this only fires on a bug; it then escapes the character instead of emitting it.
 */
const UNSAFE = new RegExp(
  String
    .raw`[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}[\p{Zs}--[\x20]]\u{2800}\u{1d159}]`,
  "gv",
);

/**
 * Turns a row of segments into a terminal string: our own SGR styling around each segment's
 * text. The only escape sequences in the result are those SGR codes.
 *
 * @param segs the row
 * @param color false to emit plain text without any SGR (e.g. for `ctl` or a dumb terminal)
 */
export function toAnsi(segs: Seg[], color = true): string {
  let out = "";
  for (const s of segs) {
    const text = s.text.replace(UNSAFE, (c) => escapeLine(c));
    const sgr = color ? SGR[s.style] : "";
    out += sgr ? `${sgr}${text}\x1b[0m` : text;
  }
  return out;
}

/**
 * Appends every item of `items` to `out`. Unlike `out.push(...items)` it does not pass the
 * items as call arguments, so a 200 000-line commit body cannot overflow the stack.
 */
export function pushAll<T>(out: T[], items: readonly T[]): void {
  for (const item of items) out.push(item);
}
