/**
 * Makes strings that came from outside (commit messages, names, paths, labels, program names)
 * inert for a terminal, and visible: nothing that could move the cursor, change colours, set a
 * window title, reorder text (bidi) or hide characters reaches the terminal. Every such
 * character is replaced by a visible escape instead of being dropped, so what the user sees is a
 * faithful, unambiguous rendering of the original.
 *
 * Notation (all ASCII, so it also renders on a bare Linux VT font):
 *
 * | original | shown as |
 * |---|---|
 * | backslash | `\\` (so an attacker cannot fake one of the escapes below) |
 * | newline, tab, carriage return | `\n`, `\t`, `\r` (newline kept as a line break by {@link escapeMultiline}) |
 * | other C0 controls, DEL, C1 controls (incl. ESC) | `\x1b`, `\x7f`, `\x9b`... (two lowercase hex digits) |
 * | bidi controls, zero-width and invisible characters, tag characters, variation selectors, soft hyphen, BOM, line/paragraph separators, non-ASCII spaces, blank symbols (U+2800, U+1D159), private-use, unassigned code points, lone surrogates | `\u{202e}` (lowercase hex) |
 * | combining marks without a base character, or more than {@link MAX_COMBINING_RUN} in a row | `\u{301}` for each mark that is not kept |
 *
 * Everything else (letters of any script, punctuation, symbols, emoji, U+FFFD) is kept as is.
 *
 * @module
 */

/** Longest run of combining marks kept on one base character; the rest are escaped. */
export const MAX_COMBINING_RUN = 4;

/**
 * Characters that are always escaped: controls (Cc), format characters (Cf: bidi controls,
 * zero-width characters, soft hyphen, tag characters, BOM...), lone surrogates (Cs), private use
 * (Co), unassigned code points (Cn), line and paragraph separators (Zl, Zp), every default
 * ignorable code point (variation selectors, CGJ, Hangul fillers...), spaces other than U+0020,
 * symbols that draw nothing (U+2800 BRAILLE PATTERN BLANK, U+1D159 MUSICAL SYMBOL NULL NOTEHEAD),
 * and the backslash itself.
 */
const ALWAYS = String
  .raw`[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}[\p{Zs}--[\x20]]\u{2800}\u{1d159}\\]`;
/** Runs of combining marks (that are not in {@link ALWAYS}). */
const MARKS = String.raw`[\p{M}--${ALWAYS}]+`;
const PATTERN = new RegExp(`(${ALWAYS})|(${MARKS})`, "gv");

/** The visible escape for one code point. */
function escapeCodePoint(cp: number): string {
  switch (cp) {
    case 0x5c:
      return "\\\\";
    case 0x0a:
      return "\\n";
    case 0x09:
      return "\\t";
    case 0x0d:
      return "\\r";
  }
  if (cp <= 0xff) return `\\x${cp.toString(16).padStart(2, "0")}`;
  return `\\u{${cp.toString(16)}}`;
}

function escapeAll(s: string): string {
  let out = "";
  for (const ch of s) out += escapeCodePoint(ch.codePointAt(0)!);
  return out;
}

function escapeWith(s: string, keepNewline: boolean): string {
  // End offset (in the original string) of the last character that was escaped or was a kept
  // newline: a combining mark right after it has no visible base of its own.
  let noBaseAt = 0;
  return s.replace(
    PATTERN,
    (match: string, always: string | undefined, _marks, offset: number) => {
      if (always !== undefined) {
        noBaseAt = offset + match.length;
        return keepNewline && match === "\n" ? "\n" : escapeCodePoint(match.codePointAt(0)!);
      }
      // A run of combining marks.
      const marks = [...match];
      const hasBase = offset !== noBaseAt;
      const keep = hasBase ? Math.min(marks.length, MAX_COMBINING_RUN) : 0;
      return marks.slice(0, keep).join("") +
        escapeAll(marks.slice(keep).join(""));
    },
  );
}

/**
 * Escapes `s` for display on one line: every newline becomes `\n`, every other dangerous or
 * invisible character a visible escape (see the module notation table). The result contains only
 * printable characters and U+0020 spaces.
 *
 * @param s any string, including lone surrogates
 * @returns the escaped text, never shorter than needed to tell two different inputs apart
 */
export function escapeLine(s: string): string {
  return escapeWith(s, false);
}

/**
 * Escapes `s` for display as several lines: `"\n"` stays a line break, everything else is
 * escaped exactly as by {@link escapeLine} (so `"\r"` shows as `\r`, tabs as `\t`). Split the
 * result at `"\n"` to get the lines.
 *
 * @param s any string
 * @returns the escaped text; its only control characters are `"\n"`
 */
export function escapeMultiline(s: string): string {
  return escapeWith(s, true);
}

/**
 * Alias of {@link escapeLine}: the safe default for any outside string shown in a terminal.
 *
 * @param s any string
 * @returns the escaped, single-line text
 */
export function escapeForDisplay(s: string): string {
  return escapeLine(s);
}

/**
 * True when `s` would be shown unchanged by {@link escapeLine}. Useful to flag values that
 * contained escaped characters.
 */
export function isPlain(s: string): boolean {
  return escapeLine(s) === s;
}
