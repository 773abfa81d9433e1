/**
 * Approval codes: the few letters the user types on the console to approve one request. Shown on
 * screen next to the request; different for every request and every version of its content, so
 * no habitual key sequence (Enter, `y`, a remembered code) approves anything (DESIGN.md §6).
 *
 * @module
 */

import { createHash } from "node:crypto";

/**
 * Letters approval codes are made of: none of them is bound to anything on the detail view (in
 * either case), none is `a`/`y`/`n` (what a hand types out of habit), none looks like a digit.
 */
export const CODE_ALPHABET = "CEFMPSTUVWXZ";
/** Letters in an approval code. */
export const CODE_LENGTH = 3;

/**
 * The approval code of a request: {@link CODE_LENGTH} letters of {@link CODE_ALPHABET} taken from
 * SHA-256 over the id and the digest, so each request (and each version of its content) has its
 * own code and no key sequence approves by habit.
 *
 * @param id the request id
 * @param digest its content digest
 * @returns e.g. `"FWC"`
 */
export function approvalCode(id: string, digest: string): string {
  const h = createHash("sha256").update(`approval-code\n${id}\n${digest}`).digest();
  let code = "";
  for (let i = 0; i < CODE_LENGTH; i++) code += CODE_ALPHABET[h[i] % CODE_ALPHABET.length];
  return code;
}
