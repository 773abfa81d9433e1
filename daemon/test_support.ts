/**
 * Test doubles of the daemon's collaborators (clock, gpg, history), shared by its unit tests.
 *
 * @module
 */

import type { HistoryEntry } from "../lib/protocol.ts";
import { GpgError, type GpgRunner, type ResolvedKey } from "./gpg.ts";
import type { HistorySink } from "./history.ts";
export { FakeClock } from "../lib/clock.ts";

/** A gpg that signs with a fixed signature; `nobody` is an unknown key. */
export class FakeGpg implements GpgRunner {
  signed: Uint8Array[] = [];
  /** How many times the passphrase cache was cleared. */
  forgotten = 0;
  forgetPassphrases(): Promise<void> {
    this.forgotten++;
    return Promise.resolve();
  }
  /** The signature of the last successful sign(). */
  lastSignature: Uint8Array | null = null;
  failSign = false;
  resolveKey(spec: string): Promise<ResolvedKey> {
    if (spec === "nobody") return Promise.reject(new GpgError("no secret key matches"));
    // "Other..." specs name another key (rules keyed on the fingerprint tell them apart).
    const fingerprint = spec.startsWith("Other") ? "OTHERFPR" : "FPR";
    return Promise.resolve({ localUser: fingerprint, fingerprint, uid: "A U Thor" });
  }
  sign(_key: ResolvedKey, payload: Uint8Array) {
    if (this.failSign) {
      return Promise.reject(new GpgError("gpg failed (exit 2)", "[GNUPG:] FAILURE sign 17\n"));
    }
    this.signed.push(payload);
    // A different signature each time, like gpg (timestamps): commit ids depend on it.
    this.lastSignature = new TextEncoder().encode(
      `-----BEGIN PGP SIGNATURE-----\n\nx${this.signed.length}\n-----END PGP SIGNATURE-----\n`,
    );
    return Promise.resolve({
      signature: this.lastSignature,
      status: "[GNUPG:] SIG_CREATED D 22 8 00 1 FPR\n",
    });
  }
}

/** A history kept in memory. */
export class MemoryHistory implements HistorySink {
  entries: HistoryEntry[] = [];
  append(e: HistoryEntry) {
    this.entries.push(e);
    return Promise.resolve();
  }
  tail(n: number) {
    return this.entries.slice(-n);
  }
}
