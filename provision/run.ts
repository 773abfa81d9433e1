/**
 * The four modes over one {@link Plan}: `--dry-run` prints it, `--check` checks every step,
 * the real run applies what fails its check, `--uninstall` undoes in reverse. Output goes
 * through a `print` function, one line per call.
 *
 * @module
 */

import { type Plan, safeCheck } from "./plan.ts";
import type { Step } from "./step.ts";

/** Where output lines go. */
export type Print = (line: string) => void;

/** The plan as text: a header, then one numbered block per step with its actions. */
export function renderPlan(plan: Plan, header: string): string[] {
  const lines = [header];
  plan.steps.forEach((s, i) => {
    const tags = [s.shared ? "machine-wide" : "", s.checkOnly ? "check only" : ""].filter(Boolean);
    lines.push(
      `${String(i + 1).padStart(2)}. ${s.title}${tags.length ? ` [${tags.join(", ")}]` : ""}`,
    );
    for (const a of s.actions) lines.push(`      ${a}`);
  });
  return lines;
}

/** The undo plan as text, in the order it runs. */
export function renderUndoPlan(plan: Plan, header: string, options: { keepShared: boolean }) {
  const lines = [header];
  let n = 0;
  for (const s of [...plan.steps].reverse()) {
    if (s.undoActions.length === 0) continue;
    const kept = s.shared && options.keepShared;
    n++;
    lines.push(`${String(n).padStart(2)}. ${s.title}${kept ? " [kept: other users remain]" : ""}`);
    if (!kept) { for (const a of s.undoActions) lines.push(`      ${a}`); }
  }
  return lines;
}

/** `--dry-run`: the plan, then what a real run would do now for each step (read-only). */
export async function dryRun(
  plan: Plan,
  options: { header: string; print: Print },
): Promise<number> {
  for (const l of renderPlan(plan, options.header)) options.print(l);
  options.print("");
  options.print("Now (nothing was changed):");
  for (const [i, s] of plan.steps.entries()) {
    const st = await safeCheck(s);
    const what = st.status === "pass"
      ? "already done"
      : st.status === "skip"
      ? `skipped: ${st.reason}`
      : s.checkOnly
      ? `needs manual action: ${st.reason}`
      : `would apply (${st.reason})`;
    options.print(`${String(i + 1).padStart(2)}. ${what}`);
  }
  return 0;
}

/**
 * `--check`: PASS, FAIL or SKIP per step; a FAIL line is followed by the command that fixes it.
 *
 * @returns 0 when nothing fails, 1 otherwise
 */
export async function check(
  plan: Plan,
  options: { print: Print; fixCommand: string },
): Promise<number> {
  let failed = 0;
  for (const s of plan.steps) {
    const st = await safeCheck(s);
    if (st.status === "pass") {
      options.print(`PASS  ${s.title}${st.note ? ` (${st.note})` : ""}`);
    } else if (st.status === "skip") {
      options.print(`SKIP  ${s.title}: ${st.reason}`);
    } else {
      failed++;
      options.print(`FAIL  ${s.title}: ${st.reason}`);
      options.print(`      fix: ${st.fix ?? s.fix ?? options.fixCommand}`);
    }
  }
  options.print(failed ? `${failed} check(s) failed` : "all checks passed");
  return failed ? 1 : 0;
}

/**
 * The real run: prints the plan, then for each step checks it, applies it when it fails and
 * checks again. Stops at the first step that still fails after apply. Check-only steps that
 * fail are reported at the end and make the exit code 1.
 *
 * @returns 0 when every step passes (or is skipped), 1 otherwise
 */
export async function apply(
  plan: Plan,
  options: { header: string; print: Print },
): Promise<number> {
  for (const l of renderPlan(plan, options.header)) options.print(l);
  options.print("");
  const manual: { step: Step; reason: string; fix?: string }[] = [];
  for (const [i, s] of plan.steps.entries()) {
    const n = String(i + 1).padStart(2);
    const before = await safeCheck(s);
    if (before.status === "pass") {
      options.print(`${n}. ok`);
      continue;
    }
    if (before.status === "skip") {
      options.print(`${n}. skipped: ${before.reason}`);
      continue;
    }
    if (s.checkOnly) {
      options.print(`${n}. NEEDS MANUAL ACTION: ${before.reason}`);
      manual.push({ step: s, reason: before.reason, fix: before.fix ?? s.fix });
      continue;
    }
    try {
      await s.apply();
    } catch (err) {
      options.print(`${n}. FAILED: ${(err as Error).message}`);
      return 1;
    }
    const after = await safeCheck(s);
    if (after.status === "fail") {
      options.print(`${n}. FAILED: still failing after apply: ${after.reason}`);
      return 1;
    }
    options.print(`${n}. applied`);
  }
  if (manual.length) {
    options.print("");
    options.print("Provisioned, but these need manual action:");
    for (const m of manual) {
      options.print(
        `  ${m.step.title}: ${m.reason}${m.fix ? `\n    fix: ${m.fix}` : ""}`,
      );
    }
    return 1;
  }
  options.print("done");
  return 0;
}

/**
 * `--uninstall`: undoes every step in reverse order. Machine-wide steps are kept while other
 * users remain provisioned. The secret store is kept unless `purge`.
 *
 * @returns 0, or 1 at the first undo that throws
 */
export async function uninstall(
  plan: Plan,
  options: { header: string; print: Print; purge: boolean; keepShared: boolean },
): Promise<number> {
  for (const l of renderUndoPlan(plan, options.header, options)) options.print(l);
  options.print("");
  for (const s of [...plan.steps].reverse()) {
    if (s.shared && options.keepShared) continue;
    try {
      await s.undo({ purge: options.purge });
    } catch (err) {
      options.print(`FAILED: ${s.title}: ${(err as Error).message}`);
      return 1;
    }
  }
  await plan.afterUndo();
  options.print(options.purge ? "removed (secret store purged)" : "removed (secret store kept)");
  return 0;
}
