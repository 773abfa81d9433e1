/**
 * Parsing of git signing payloads: the exact bytes git hands `gpg.program` on stdin when it
 * signs a commit, an annotated tag or a push certificate.
 *
 * Formats: git's commit object format (git/commit.c, gitformat-signature(5)), the tag object
 * format (gitformat-signature(5), git/tag.c) and the push certificate (gitformat-signature(5),
 * git/send-pack.c). Parsing rules: shared/reference/git-gpg-program.md §3.4.
 *
 * Everything here works on the raw bytes and only decodes text for display. Nothing is ever
 * rebuilt from the parsed fields: the daemon signs the bytes it received.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Header, Ident, SignContent } from "./protocol.ts";

/** Raised by {@link parsePayload} for bytes that are not a well-formed signing payload. */
export class PayloadError extends Error {
  /**
   * Makes the error.
   *
   * @param message What is wrong with the payload, for people.
   */
  constructor(message: string) {
    super(message);
    this.name = "PayloadError";
  }
}

const LF = 0x0a;
const SP = 0x20;

const UTF8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const ASCII = new TextEncoder();

const OID_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
const IDENT_DATE_RE = /^([0-9]+) ([+-][0-9]{4})$/;

/** Encodings whose labels TextDecoder knows but which are not ASCII-compatible. */
const NON_ASCII_COMPATIBLE = new Set(["utf-16le", "utf-16be"]);

function startsWith(bytes: Uint8Array, prefix: string): boolean {
  const p = ASCII.encode(prefix);
  if (bytes.length < p.length) return false;
  for (let i = 0; i < p.length; i++) if (bytes[i] !== p[i]) return false;
  return true;
}

/** Index of the first "\n\n" in `bytes`, or -1. */
function findBlankLine(bytes: Uint8Array): number {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] === LF && bytes[i + 1] === LF) return i;
  }
  return -1;
}

/**
 * The decoder to use for text written in the git encoding `label` (the `encoding` header).
 *
 * @param label Value of the `encoding` header, or null when there is none (UTF-8).
 * @returns `decoder` never throws (invalid bytes become U+FFFD and a BOM is kept);
 *   `known` is false when the label is not one TextDecoder supports as an ASCII-compatible
 *   encoding (e.g. `bogus`, `UTF-16`), in which case `decoder` is UTF-8.
 */
export function decoderFor(label: string | null): { decoder: TextDecoder; known: boolean } {
  if (label === null) return { decoder: UTF8, known: true };
  try {
    const decoder = new TextDecoder(label.trim(), { fatal: false, ignoreBOM: true });
    if (NON_ASCII_COMPATIBLE.has(decoder.encoding)) return { decoder: UTF8, known: false };
    return { decoder, known: true };
  } catch {
    return { decoder: UTF8, known: false };
  }
}

/**
 * A note for the person approving when the text of `content` could not be decoded the way its
 * `encoding` header asks (unknown label: shown as UTF-8 with replacement characters instead).
 *
 * @returns The note, or null when the text was decoded as declared.
 */
export function decodingNote(content: SignContent): string | null {
  if (content.type !== "commit" || content.encoding === null) return null;
  if (decoderFor(content.encoding).known) return null;
  return `unknown encoding "${content.encoding}": text shown as UTF-8`;
}

/** A header with its value still as bytes (continuation lines joined with "\n"). */
interface RawHeader {
  key: string;
  value: Uint8Array;
}

/**
 * Splits the header block (without the final line feed) into headers. A line starting with
 * one SP continues the previous header: that SP is dropped and the lines are joined with "\n".
 */
function splitHeaders(block: Uint8Array): RawHeader[] {
  const headers: { key: string; parts: Uint8Array[] }[] = [];
  let start = 0;
  while (start <= block.length) {
    let end = block.indexOf(LF, start);
    if (end < 0) end = block.length;
    const line = block.subarray(start, end);
    if (line.length > 0 && line[0] === SP) {
      const last = headers[headers.length - 1];
      if (!last) throw new PayloadError("payload starts with a continuation line");
      last.parts.push(line.subarray(1));
    } else {
      if (line.length === 0) throw new PayloadError("empty header line");
      const sp = line.indexOf(SP);
      const keyBytes = sp < 0 ? line : line.subarray(0, sp);
      const value = sp < 0 ? new Uint8Array(0) : line.subarray(sp + 1);
      headers.push({ key: UTF8.decode(keyBytes), parts: [value] });
    }
    start = end + 1;
  }
  return headers.map(({ key, parts }) => ({ key, value: joinLines(parts) }));
}

function joinLines(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const len = parts.reduce((n, p) => n + p.length, 0) + parts.length - 1;
  const out = new Uint8Array(len);
  let pos = 0;
  parts.forEach((p, i) => {
    if (i > 0) out[pos++] = LF;
    out.set(p, pos);
    pos += p.length;
  });
  return out;
}

/**
 * Parses an ident value (`Name <email> epoch tz`). The date is what follows the last `>`;
 * the name is what precedes the first `<` (trailing spaces removed); the email is everything
 * between them, so a stray `>` inside the address stays visible.
 */
function parseIdent(key: string, value: string): Ident {
  const gt = value.lastIndexOf(">");
  const lt = value.indexOf("<");
  if (gt < 0 || lt < 0 || lt > gt) throw new PayloadError(`malformed ${key} line: no <email>`);
  const date = IDENT_DATE_RE.exec(value.slice(gt + 1).trim());
  if (!date) throw new PayloadError(`malformed ${key} line: bad date`);
  const time = Number(date[1]);
  if (!Number.isSafeInteger(time)) throw new PayloadError(`malformed ${key} line: bad date`);
  return {
    name: value.slice(0, lt).replace(/ +$/, ""),
    email: value.slice(lt + 1, gt),
    time,
    tz: date[2],
  };
}

function checkOid(key: string, value: string): string {
  if (!OID_RE.test(value)) {
    throw new PayloadError(`malformed ${key} id (want 40 or 64 lowercase hex digits)`);
  }
  return value;
}

/** Splits a decoded message into subject (first line) and body (the rest, minus one blank). */
function splitMessage(message: string): { subject: string; body: string } {
  const nl = message.indexOf("\n");
  if (nl < 0) return { subject: message, body: "" };
  let body = message.slice(nl + 1);
  if (body.startsWith("\n")) body = body.slice(1);
  return { subject: message.slice(0, nl), body };
}

/** Takes the single allowed header `key` out of `headers`; throws when it repeats. */
function single(headers: RawHeader[], key: string): Uint8Array | null {
  const found = headers.filter((h) => h.key === key);
  if (found.length > 1) throw new PayloadError(`more than one ${key} header`);
  return found.length ? found[0].value : null;
}

function parseCommit(headers: RawHeader[], message: Uint8Array): SignContent {
  const encodingRaw = single(headers, "encoding");
  const encoding = encodingRaw === null ? null : UTF8.decode(encodingRaw);
  const { decoder } = decoderFor(encoding);

  const treeRaw = single(headers, "tree");
  if (treeRaw === null) throw new PayloadError("commit without a tree");
  const tree = checkOid("tree", UTF8.decode(treeRaw));
  // git reads parents only from the lines right after `tree` (parse_commit_buffer()); a
  // `parent` anywhere else would be shown as a parent that git does not consider one.
  let nParents = 1;
  while (nParents < headers.length && headers[nParents].key === "parent") nParents++;
  if (headers.slice(nParents).some((h) => h.key === "parent")) {
    throw new PayloadError("parent header after other headers");
  }
  const parents = headers.slice(1, nParents).map((h) => checkOid("parent", UTF8.decode(h.value)));
  if (parents.some((p) => p.length !== tree.length)) {
    throw new PayloadError("parent ids and tree id have different lengths");
  }
  const ident = (key: string): Ident | null => {
    const raw = single(headers, key);
    return raw === null ? null : parseIdent(key, decoder.decode(raw));
  };
  const author = ident("author");
  const committer = ident("committer");
  const known = new Set(["tree", "parent", "author", "committer", "encoding"]);
  return {
    type: "commit",
    tree,
    parents,
    author,
    committer,
    encoding,
    extraHeaders: headers.filter((h) => !known.has(h.key)).map(toHeader),
    ...splitMessage(decoder.decode(message)),
  };
}

function parseTag(headers: RawHeader[], message: Uint8Array): SignContent {
  const need = (key: string): string => {
    const raw = single(headers, key);
    if (raw === null) throw new PayloadError(`tag without a ${key} header`);
    return UTF8.decode(raw);
  };
  const object = checkOid("object", need("object"));
  const objectType = need("type");
  const tag = need("tag");
  // git's parse_tag_buffer() wants exactly this order.
  if (headers[1].key !== "type" || headers[2].key !== "tag") {
    throw new PayloadError("tag headers out of order (want object, type, tag)");
  }
  const taggerRaw = single(headers, "tagger");
  const known = new Set(["object", "type", "tag", "tagger"]);
  return {
    type: "tag",
    object,
    objectType,
    tag,
    tagger: taggerRaw === null ? null : parseIdent("tagger", UTF8.decode(taggerRaw)),
    extraHeaders: headers.filter((h) => !known.has(h.key)).map(toHeader),
    ...splitMessage(UTF8.decode(message)),
  };
}

function parsePush(headers: RawHeader[], body: Uint8Array): SignContent {
  // The first line is `certificate version X`: key "certificate", value "version X".
  const version = UTF8.decode(headers[0].value).slice("version ".length);
  const rest = headers.slice(1);
  if (rest.some((h) => h.key === "certificate")) {
    throw new PayloadError("more than one certificate line");
  }
  const text = (key: string): string => {
    const raw = single(rest, key);
    return raw === null ? "" : UTF8.decode(raw);
  };
  const pushee = text("pushee");
  const nonce = text("nonce");
  const pusherRaw = single(rest, "pusher");
  let pusher: Ident | null = null;
  let pusherIsIdent = false;
  if (pusherRaw !== null) {
    try {
      pusher = parseIdent("pusher", UTF8.decode(pusherRaw));
      pusherIsIdent = true;
    } catch {
      // git writes `user.signingKey` (a key id, no <email>) here when it is set.
      pusher = null;
    }
  }
  const known = new Set(["pushee", "nonce"]);
  if (pusherIsIdent) known.add("pusher");
  const updates: { old: string; new: string; ref: string }[] = [];
  const lines = UTF8.decode(body).split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.+)$/s.exec(line);
    if (!m) throw new PayloadError("malformed ref update line in push certificate");
    updates.push({
      old: checkOid("old", m[1]),
      new: checkOid("new", m[2]),
      ref: m[3],
    });
  }
  return {
    type: "push",
    version,
    pusher,
    pushee,
    nonce,
    extraHeaders: rest.filter((h) => !known.has(h.key)).map(toHeader),
    updates,
  };
}

function toHeader(h: RawHeader): Header {
  return { key: h.key, value: UTF8.decode(h.value) };
}

/**
 * Parses the bytes git hands `gpg.program` to sign.
 *
 * The kind is chosen by the first line: `tree ` → commit, `object ` → tag,
 * `certificate version ` → push certificate. Headers end at the first "\n\n" (without one,
 * the whole payload is headers and the message is empty). Text is decoded for display only:
 * a commit's message and idents with its `encoding` header (UTF-8 when absent or unknown,
 * see {@link decodingNote}), everything else as UTF-8; invalid bytes become U+FFFD.
 *
 * The message is split into `subject` (first line) and `body` (the rest, without the one
 * blank line that separates them); nothing else is removed, comment lines included.
 *
 * Formats: git's commit object format (git/commit.c, gitformat-signature(5)); tags and push
 * certificates as in gitformat-signature(5).
 *
 * @param bytes The payload exactly as received.
 * @returns The parsed content. Missing `author`/`committer`/`tagger`/`pusher` are null; a
 *   push certificate's `pusher` is also null when git wrote a key id there instead of an
 *   ident, and the raw line then stays in `extraHeaders`.
 * @throws {PayloadError} For an unknown first line; a commit without `tree`, with a `tree`
 *   or `parent` that is not 40 or 64 lowercase hex digits, with a `parent` line that does
 *   not directly follow `tree` or the parents before it (git would not take it as a
 *   parent), or with repeated `tree`/`author`/`committer`/`encoding`; a malformed
 *   `author`/`committer`/`tagger`; a tag whose first lines are not `object`, `type`, `tag`;
 *   a malformed push-certificate update line; a continuation line with nothing to continue.
 *   A push certificate's `pushee` and `nonce` are "" when absent.
 */
export function parsePayload(bytes: Uint8Array): SignContent {
  let kind: "commit" | "tag" | "push";
  if (startsWith(bytes, "tree ")) kind = "commit";
  else if (startsWith(bytes, "object ")) kind = "tag";
  else if (startsWith(bytes, "certificate version ")) kind = "push";
  else {
    throw new PayloadError(
      "not a signing payload: the first line starts with none of " +
        '"tree ", "object ", "certificate version "',
    );
  }
  const blank = findBlankLine(bytes);
  let block: Uint8Array;
  let message: Uint8Array;
  if (blank < 0) {
    block = bytes[bytes.length - 1] === LF ? bytes.subarray(0, bytes.length - 1) : bytes;
    message = new Uint8Array(0);
  } else {
    block = bytes.subarray(0, blank);
    message = bytes.subarray(blank + 2);
  }
  const headers = splitHeaders(block);
  if (kind === "commit") return parseCommit(headers, message);
  if (kind === "tag") return parseTag(headers, message);
  return parsePush(headers, message);
}

/**
 * The request kind for parsed content.
 *
 * @returns `sign.commit`, `sign.tag` or `sign.push`.
 */
export function payloadKind(content: SignContent): "sign.commit" | "sign.tag" | "sign.push" {
  switch (content.type) {
    case "commit":
      return "sign.commit";
    case "tag":
      return "sign.tag";
    case "push":
      return "sign.push";
  }
}

/**
 * A one-line summary for lists and the history: the commit subject, the tag subject, or
 * `push N refs to <pushee>`. Empty subjects become `(empty message)` for commits and
 * `tag <name>` for tags. Line breaks are replaced by spaces; nothing else is escaped
 * (the result is raw text, like every string in {@link SignContent}).
 */
export function summarize(content: SignContent): string {
  let s: string;
  switch (content.type) {
    case "commit":
      s = content.subject || "(empty message)";
      break;
    case "tag":
      s = content.subject || `tag ${content.tag}`;
      break;
    case "push": {
      const n = content.updates.length;
      s = `push ${n} ${n === 1 ? "ref" : "refs"} to ${content.pushee}`;
      break;
    }
  }
  return s.replace(/[\r\n]+/g, " ");
}

/**
 * The id of the commit git will write from a commit `payload` and the `signature` gpg
 * returned for it, computed the way git builds the signed object (git/commit.c:
 * `add_header_signature()`, formerly `do_sign_commit()`; gitformat-signature(5)).
 *
 * Exactly like git 2.39 to 2.55: every CR is removed from the signature; the signature stops
 * at a NUL byte; each of its lines is inserted, prefixed by one space, just before the blank
 * line that ends the headers (at the end when there is none), the first one after the header
 * name `gpgsig` (SHA-1) or `gpgsig-sha256` (SHA-256). A signature without a final newline is
 * inserted without one (git then writes a corrupt commit whose message became a header, and
 * so does this prediction); an empty signature leaves the payload unsigned. The result is the
 * hash of `commit <len>\0<object>`.
 *
 * @param payload The commit payload exactly as signed.
 * @param signature What `gpg.program` wrote on stdout.
 * @param algo The repository's object format.
 * @returns The commit id as lowercase hex (40 or 64 digits).
 */
export function commitIdWithSignature(
  payload: Uint8Array,
  signature: Uint8Array,
  algo: "sha1" | "sha256",
): string {
  const nul = signature.indexOf(0);
  const sig = (nul < 0 ? signature : signature.subarray(0, nul)).filter((b) => b !== 0x0d);
  // git looks for the blank line with strstr(), which stops at a NUL.
  const payloadNul = payload.indexOf(0);
  const blank = findBlankLine(payloadNul < 0 ? payload : payload.subarray(0, payloadNul));
  const insertAt = blank < 0 ? payload.length : blank + 1;
  const parts: Uint8Array[] = [payload.subarray(0, insertAt)];
  if (sig.length > 0) {
    parts.push(ASCII.encode(algo === "sha1" ? "gpgsig" : "gpgsig-sha256"));
    let pos = 0;
    while (pos < sig.length) {
      const nl = sig.indexOf(LF, pos);
      const end = nl < 0 ? sig.length : nl + 1;
      parts.push(ASCII.encode(" "), sig.subarray(pos, end));
      pos = end;
    }
  }
  parts.push(payload.subarray(insertAt));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const hash = createHash(algo);
  hash.update(ASCII.encode(`commit ${total}\0`));
  for (const p of parts) hash.update(p);
  return hash.digest("hex");
}
