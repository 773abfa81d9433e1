/**
 * Prompt objects (Secret Service spec ch. 10, `org.freedesktop.Secret.Prompt`): the spec's own
 * hook for interaction, used here for the human's approval on the trusted console. A prompt
 * belongs to the connection whose call created it; `Prompt(window)` raises the daemon request,
 * `Dismiss()` withdraws it, and `Completed(b dismissed, v result)` is sent once, unicast to the
 * owner, with the result type the operation expects (reference §1.7, pitfall #12: `ao` for
 * Unlock, `o` for CreateItem; libsecret expects nothing in particular for Delete).
 *
 * The reply to `Prompt()` is held back while the human decides, for at most `holdMs` (below
 * the ~25 s client call timeout). A refusal within that time is also answered as an error of
 * `Prompt()` itself: libsecret reports a dismissed prompt as "nothing stored / nothing found"
 * without an error (`secret-tool store` would exit 0 after a denial), but passes a `Prompt()`
 * error on to the user. `Completed` follows the reply either way; a decision that takes longer
 * arrives through `Completed` alone, with no time limit.
 *
 * @module
 */

import { PROMPT_PREFIX } from "../lib/secret_service.ts";
import { bounded, TIMEOUT } from "./bounded.ts";
import { noSuchObject, type ServiceError } from "./errors.ts";
import type { VariantLike } from "./sessions.ts";

/** The arguments of `Completed`, and why the operation did not happen (when it matters). */
export interface PromptResult {
  dismissed: boolean;
  result: VariantLike;
  /** The refusal (denied, failed) to answer `Prompt()` with when it comes in time. */
  error?: ServiceError;
}

/** What a prompt does when the client runs it. */
export interface PromptWork {
  /**
   * Raises the request at the daemon. Resolves, once it is raised, with the `outcome` to come
   * (a promise that never rejects); rejects with the error `Prompt()` answers with.
   */
  start(): Promise<{ outcome: Promise<PromptResult> }>;
  /** Withdraws the raised request (bounded in time, never throws). */
  cancel(): Promise<void>;
  /** The `Completed` result sent when the prompt is dismissed (an empty value of its type). */
  dismissed: VariantLike;
}

/** Sends `Completed` for a prompt to its owner. */
export type CompletedSender = (owner: string, path: string, result: PromptResult) => void;

interface Prompt {
  owner: string;
  work: PromptWork;
  state: "new" | "running";
}

/** The prompts of every client connection. */
export class PromptTable {
  #prompts = new Map<string, Prompt>();
  #next = 1;
  #send: CompletedSender;
  #holdMs: number;

  /**
   * @param send delivers `Completed` (unicast to the owner)
   * @param options `holdMs`: how long `Prompt()` waits for the decision before it returns
   */
  constructor(send: CompletedSender, options: { holdMs: number }) {
    this.#send = send;
    this.#holdMs = options.holdMs;
  }

  /**
   * Makes a prompt for `owner`.
   *
   * @returns its object path, `/org/freedesktop/secrets/prompt/<n>`
   */
  create(owner: string, work: PromptWork): string {
    const path = `${PROMPT_PREFIX}${this.#next++}`;
    this.#prompts.set(path, { owner, work, state: "new" });
    return path;
  }

  #get(path: string, caller: string): Prompt {
    const p = this.#prompts.get(path);
    // Another connection's prompt does not exist for the caller.
    if (!p || p.owner !== caller) throw noSuchObject(path);
    return p;
  }

  /** True when `path` is a prompt of `caller`. */
  owns(path: string, caller: string): boolean {
    return this.#prompts.get(path)?.owner === caller;
  }

  /**
   * `Prompt.Prompt(window)`: raises the request (a second call while it runs does nothing) and
   * waits up to `holdMs` for the decision. `Completed` follows when the human decides.
   *
   * @returns `after`: sends `Completed` when it is due right away; call it after the reply
   * @throws {ServiceError} NoSuchObject for an unknown or foreign prompt; the refusal when the
   *   human refused in time (its `after` sends `Completed`); whatever
   *   {@link PromptWork.start} throws (the prompt is then gone)
   */
  async prompt(path: string, caller: string): Promise<{ after?: () => void }> {
    const p = this.#get(path, caller);
    if (p.state === "running") return {};
    p.state = "running";
    let outcome: Promise<PromptResult>;
    try {
      ({ outcome } = await p.work.start());
    } catch (err) {
      this.#prompts.delete(path);
      throw err;
    }
    const early = await bounded(outcome, this.#holdMs);
    if (early === TIMEOUT) {
      outcome.then((r) => this.#complete(path, p, r));
      return {};
    }
    const after = () => this.#complete(path, p, early);
    if (early.error && this.#prompts.get(path) === p) {
      early.error.after = after;
      throw early.error;
    }
    return { after };
  }

  /**
   * `Prompt.Dismiss()`: sends `Completed(true, <empty>)` and withdraws a running request.
   *
   * @throws {ServiceError} NoSuchObject for an unknown or foreign prompt
   */
  async dismiss(path: string, caller: string): Promise<void> {
    const p = this.#get(path, caller);
    const running = p.state === "running";
    this.#complete(path, p, { dismissed: true, result: p.work.dismissed });
    if (running) await p.work.cancel();
  }

  #complete(path: string, p: Prompt, r: PromptResult): void {
    // The first outcome wins (Dismiss races with the daemon's answer).
    if (this.#prompts.get(path) !== p) return;
    this.#prompts.delete(path);
    this.#send(p.owner, path, r);
  }

  /** Forgets the prompts of a connection that left and withdraws their running requests. */
  async dropOwner(owner: string): Promise<void> {
    const cancels: Promise<void>[] = [];
    for (const [path, p] of this.#prompts) {
      if (p.owner !== owner) continue;
      this.#prompts.delete(path);
      if (p.state === "running") cancels.push(p.work.cancel());
    }
    await Promise.all(cancels);
  }

  /** True when the connection has a prompt. */
  hasOwner(owner: string): boolean {
    for (const p of this.#prompts.values()) if (p.owner === owner) return true;
    return false;
  }

  /** The prompt paths a connection owns (for introspection). */
  pathsOf(owner: string): string[] {
    return [...this.#prompts].filter(([, p]) => p.owner === owner).map(([path]) => path);
  }

  /** Forgets every prompt, withdrawing running requests (shutdown). */
  async clear(): Promise<void> {
    const owners = new Set([...this.#prompts.values()].map((p) => p.owner));
    await Promise.all([...owners].map((o) => this.dropOwner(o)));
  }
}
