/**
 * The store passphrase as the console takes it on its VT: a fixed-size byte buffer that is
 * zeroed whenever it is emptied, and the byte-level split of terminal input into prompt keys.
 *
 * The passphrase never becomes a JavaScript string in the console's own code (strings cannot be
 * zeroed): while the prompt is on screen, `main.ts` hands the raw input bytes to
 * {@link promptKeys} instead of decoding them, appends the text bytes to a
 * {@link PassphraseBuffer}, and {@link PassphraseBuffer.take}s them for `Admin1.UnlockStore`,
 * zeroing every copy it made after the call. Nothing here logs, prints or stores the bytes
 * elsewhere. (Copies made by Deno's stdin read and by dbus-next while sending are outside the
 * console's reach.)
 *
 * @module
 */

import { MAX_PASSWORD_BYTES } from "../lib/protocol.ts";

/**
 * Holds the bytes typed so far, up to a fixed capacity. Erased and cleared bytes are zeroed at
 * once; {@link take} moves the content out and zeroes the buffer.
 */
export class PassphraseBuffer {
  readonly #bytes: Uint8Array;
  #length = 0;

  /**
   * @param storage where the bytes are kept (its length is the capacity); default a fresh array
   *   of {@link MAX_PASSWORD_BYTES}. Tests pass their own to see that it is zeroed.
   */
  constructor(storage: Uint8Array = new Uint8Array(MAX_PASSWORD_BYTES)) {
    this.#bytes = storage;
    this.#bytes.fill(0);
  }

  /** True when nothing is held. */
  get empty(): boolean {
    return this.#length === 0;
  }

  /**
   * Appends `bytes` (text exactly as typed, UTF-8). All or nothing: when they do not fit,
   * nothing is appended.
   *
   * @returns false when they did not fit
   */
  append(bytes: Uint8Array): boolean {
    if (this.#length + bytes.length > this.#bytes.length) return false;
    this.#bytes.set(bytes, this.#length);
    this.#length += bytes.length;
    return true;
  }

  /** Erases the last character (a whole UTF-8 sequence), zeroing its bytes. */
  eraseLast(): void {
    if (this.#length === 0) return;
    let start = this.#length - 1;
    // Continuation bytes (10xxxxxx) belong to the character that starts before them.
    while (start > 0 && (this.#bytes[start] & 0xc0) === 0x80) start--;
    this.#bytes.fill(0, start, this.#length);
    this.#length = start;
  }

  /** Zeroes and empties the buffer. */
  clear(): void {
    this.#bytes.fill(0);
    this.#length = 0;
  }

  /**
   * True when `other` holds exactly the same bytes (creating the store: the passphrase typed
   * twice). Compares in place, never through a string; the time taken does not depend on where
   * the first difference is.
   */
  matches(other: PassphraseBuffer): boolean {
    let diff = this.#length ^ other.#length;
    const n = Math.min(this.#bytes.length, other.#bytes.length);
    for (let i = 0; i < n; i++) diff |= this.#bytes[i] ^ other.#bytes[i];
    return diff === 0 && this.#bytes.length === other.#bytes.length;
  }

  /**
   * Moves the content out: a new array holding the bytes, while the buffer is zeroed and
   * emptied. The caller zeroes the returned array once it is done with it.
   */
  take(): Uint8Array {
    const out = this.#bytes.slice(0, this.#length);
    this.clear();
    return out;
  }
}

/**
 * A key on the passphrase prompt. `text` is a view into the input (printable bytes, UTF-8 as
 * typed), valid only until the input buffer is reused: copy it into a {@link PassphraseBuffer} at
 * once.
 */
export type PromptKey =
  | { type: "text"; bytes: Uint8Array }
  | { type: "enter" | "erase" | "clear" | "esc" | "ctrl-c" | "ignored" };

const ESC = 0x1b;

/**
 * Splits raw terminal input into prompt keys without decoding it to a string: Enter (CR, LF),
 * Backspace (DEL, BS) erases, Ctrl-U clears, Ctrl-C, a lone ESC at the end of the input is
 * Escape; cursor keys and other escape sequences (CSI, SS3, Alt+key) and other control
 * characters are `ignored`; runs of other bytes are `text`.
 *
 * @param input one read's worth of terminal input
 */
export function promptKeys(input: Uint8Array): PromptKey[] {
  const keys: PromptKey[] = [];
  let i = 0;
  while (i < input.length) {
    const b = input[i];
    if (b === ESC) {
      const next = input[i + 1];
      if (next === undefined) {
        keys.push({ type: "esc" });
        i++;
      } else if (next === 0x5b || next === 0x4f) { // "[" or "O": CSI or SS3
        let j = i + 2;
        while (j < input.length && /[0-9;?]/.test(String.fromCharCode(input[j]))) j++;
        keys.push({ type: "ignored" });
        i = j + 1; // past the final byte (or the end)
      } else {
        // Alt+key: ESC and the whole character after it.
        let j = i + 2;
        while (j < input.length && (input[j] & 0xc0) === 0x80) j++;
        keys.push({ type: "ignored" });
        i = j;
      }
      continue;
    }
    if (b === 0x0d || b === 0x0a) keys.push({ type: "enter" });
    else if (b === 0x7f || b === 0x08) keys.push({ type: "erase" });
    else if (b === 0x15) keys.push({ type: "clear" });
    else if (b === 0x03) keys.push({ type: "ctrl-c" });
    else if (b < 0x20) keys.push({ type: "ignored" });
    else {
      let j = i + 1;
      while (j < input.length && input[j] >= 0x20 && input[j] !== 0x7f && input[j] !== ESC) j++;
      keys.push({ type: "text", bytes: input.subarray(i, j) });
      i = j;
      continue;
    }
    i++;
  }
  return keys;
}
