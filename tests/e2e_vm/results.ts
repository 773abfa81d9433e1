/**
 * The record the VM scenario writes for each step (one JSON object per line of `steps.jsonl` in
 * the shared folder) and how the host prints them.
 *
 * @module
 */

/** One step of the scenario. */
export interface StepResult {
  /** What the step asserts, e.g. "alice's login password unlocks the store". */
  name: string;
  ok: boolean;
  /** Seconds the step took (guest clock). */
  seconds: number;
  /** What was seen (on success) or why it failed. */
  detail: string;
  /** On failure: labelled evidence (VT 8's screen, journal lines, command output). */
  evidence?: Record<string, string>;
}

/**
 * Lines to print for the steps, and how many failed.
 *
 * @returns `lines`: one `PASS`/`FAIL` line per step, failures followed by their evidence
 */
export function summarize(steps: StepResult[]): { lines: string[]; failed: number } {
  const lines: string[] = [];
  let failed = 0;
  for (const s of steps) {
    lines.push(`${s.ok ? "PASS" : "FAIL"} ${s.name} (${s.seconds.toFixed(1)} s): ${s.detail}`);
    if (s.ok) continue;
    failed++;
    for (const [label, text] of Object.entries(s.evidence ?? {})) {
      lines.push(`  --- ${label} ---`);
      for (const l of text.split("\n")) lines.push(`  ${l}`);
    }
  }
  return { lines, failed };
}
