/**
 * What the daemon tells the desktop agent about a pending request (`RequestPending`,
 * `ListPending`; {@link PendingSummary} in `lib/protocol.ts`): the operation, the item label or
 * commit subject, and the program asking. Built from the request's view only, so it can never
 * hold a secret value (views carry sizes, never values) or the signing payload beyond its
 * subject line.
 *
 * @module
 */

import { summarize } from "../lib/payload.ts";
import { MAX_SUMMARY_CHARS, type PendingSummary, type RequestView } from "../lib/protocol.ts";

/**
 * The {@link PendingSummary} of a request: one line each, cut at `MAX_SUMMARY_CHARS`
 * (`…` marks a cut), raw (the displaying side escapes).
 *
 * @param view the request as the manager holds it
 * @returns id, kind, summary and program
 */
export function pendingSummary(view: RequestView): PendingSummary {
  return {
    id: view.id,
    kind: view.kind,
    summary: oneLine(describe(view)),
    program: oneLine(program(view)),
  };
}

function describe(view: RequestView): string {
  if (view.sign) {
    const c = view.sign.content;
    if (c.type === "push") return summarize(c);
    return `${c.type} "${summarize(c)}"`;
  }
  const s = view.secret;
  if (!s) return view.kind;
  const first = s.items[0]?.label;
  const label = (l: string | undefined) => `"${l ?? ""}"`;
  switch (s.operation) {
    case "read":
      return `read ${label(first)}${s.items.length > 1 ? ` and ${s.items.length - 1} more` : ""}`;
    case "create":
      return `${s.items.length > 0 ? "replace" : "store"} ${label(s.label)}`;
    case "set-secret":
      return `change the secret of ${label(first)}`;
    case "set-properties": {
      const what = [s.label !== undefined ? "label" : "", s.attributes ? "attributes" : ""]
        .filter((w) => w !== "").join(" and ");
      return `change the ${what} of ${label(first)}`;
    }
    case "delete":
      return `delete ${label(first)}`;
  }
}

function program(view: RequestView): string {
  if (view.secret) {
    const c = view.secret.client;
    return c.exe ?? c.cmdline?.[0] ?? `pid ${c.pid ?? "?"}`;
  }
  const repo = view.sign?.reported.repo;
  if (repo) return `git in ${repo}`;
  return view.caller.cmdline?.join(" ") ?? `pid ${view.caller.pid ?? "?"}`;
}

/** Line breaks become spaces; longer than the limit is cut with `…`. */
function oneLine(s: string): string {
  const points = [...s.replace(/[\r\n]+/g, " ")];
  return points.length > MAX_SUMMARY_CHARS
    ? `${points.slice(0, MAX_SUMMARY_CHARS - 1).join("")}…`
    : points.join("");
}
