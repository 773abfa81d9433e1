/**
 * The unit of provisioning: an idempotent step with a read-only `check()`, an `apply()` that
 * makes the check pass, and an `undo()` for `--uninstall`. The same list of steps serves
 * `--dry-run` (print), `--check` (check), the real run (check, apply what fails, check again)
 * and `--uninstall` (undo in reverse).
 *
 * @module
 */

/** Result of a check. */
export type Status =
  | { status: "pass"; note?: string }
  | { status: "fail"; reason: string; fix?: string }
  | { status: "skip"; reason: string };

/** A passing check, with an optional note. */
export function pass(note?: string): Status {
  return note === undefined ? { status: "pass" } : { status: "pass", note };
}

/**
 * A failing check and why.
 *
 * @param fix the command that fixes this very failure, when it differs from the step's own
 *   {@link Step.fix} (a check that fails in several ways may need several fixes)
 */
export function fail(reason: string, fix?: string): Status {
  return fix === undefined ? { status: "fail", reason } : { status: "fail", reason, fix };
}

/** A check that cannot be made here, and why. */
export function skip(reason: string): Status {
  return { status: "skip", reason };
}

/** Options of {@link Step.undo}. */
export interface UndoOptions {
  /** Also remove the secret store (the companion's home). */
  purge: boolean;
}

/** One idempotent step. */
export interface Step {
  /** Stable identifier, e.g. `user`, `file:/etc/...`. */
  id: string;
  /** One line: what the step makes true. */
  title: string;
  /** What `apply()` does, as commands or short sentences (the plan shows them). */
  actions: string[];
  /** What `undo()` does. */
  undoActions: string[];
  /**
   * Machine-wide (code, Deno, PAM profile): `--uninstall` leaves it while other users remain
   * provisioned.
   */
  shared: boolean;
  /**
   * True when `apply()` cannot fix a failing check (a condition of the machine, such as the
   * tty's owner); `fix` then tells the human what to do.
   */
  checkOnly: boolean;
  /**
   * The command that fixes a failing check, when it is not "run provision again"; a failing
   * check's own `fix` ({@link fail}) takes precedence.
   */
  fix?: string;
  /** Reads the system; never changes it. */
  check(): Promise<Status>;
  /** Makes `check()` pass. Runs only when it fails. */
  apply(): Promise<void>;
  /** Removes what `apply()` made (no-op when absent). */
  undo(options: UndoOptions): Promise<void>;
}

/** A step's fields with defaults for the optional ones. */
export function step(
  s: Omit<Step, "shared" | "checkOnly" | "undoActions" | "undo" | "apply"> & {
    shared?: boolean;
    checkOnly?: boolean;
    undoActions?: string[];
    apply?: () => Promise<void>;
    undo?: (options: UndoOptions) => Promise<void>;
  },
): Step {
  return {
    shared: false,
    checkOnly: false,
    undoActions: [],
    apply: () => {
      throw new Error(`${s.title}: cannot be fixed automatically${s.fix ? `; ${s.fix}` : ""}`);
    },
    undo: () => Promise.resolve(),
    ...s,
  };
}
