/** Which collection stands for the store, and how its state is worded. */

import assert from "node:assert/strict";
import { SESSION_COLLECTION } from "../lib/secret_service.ts";
import { chooseStore, hasNoKeyring, storeStatusOf } from "./backend.ts";

const LOGIN = "/org/freedesktop/secrets/collection/login";
const OTHER = "/org/freedesktop/secrets/collection/other";

Deno.test("chooseStore: the default alias, else the first collection; gnome-keyring's session collection never counts", () => {
  assert.deepEqual(chooseStore(LOGIN, []), { kind: "default", path: LOGIN });
  assert.deepEqual(chooseStore(null, [SESSION_COLLECTION, OTHER, LOGIN]), {
    kind: "first",
    path: OTHER,
  });
  // A backend whose collections are all real ones keeps the first-collection fallback.
  assert.deepEqual(chooseStore(null, [OTHER]), { kind: "first", path: OTHER });
  // The default alias pointed at the session collection is no keyring either.
  assert.deepEqual(chooseStore(SESSION_COLLECTION, [SESSION_COLLECTION, OTHER]), {
    kind: "first",
    path: OTHER,
  });
  assert.deepEqual(chooseStore(null, [SESSION_COLLECTION]), { kind: "noKeyring" });
  assert.deepEqual(chooseStore(SESSION_COLLECTION, [SESSION_COLLECTION]), { kind: "noKeyring" });
  assert.deepEqual(chooseStore(null, []), { kind: "none" });
  assert.equal(hasNoKeyring([SESSION_COLLECTION]), true);
  assert.equal(hasNoKeyring([SESSION_COLLECTION, LOGIN]), false);
  assert.equal(hasNoKeyring([]), false);
});

Deno.test("storeStatusOf: no keyring is locked and says what creates it; the others as before", () => {
  assert.deepEqual(storeStatusOf({ kind: "noKeyring" }), {
    state: "locked",
    message: "the secret store has no keyring yet: the first unlock with a store passphrase " +
      "creates it (gnome-keyring's in-memory session collection does not count)",
    noKeyring: true,
  });
  assert.equal(storeStatusOf({ kind: "none" }).state, "unavailable");
  assert.deepEqual(
    storeStatusOf({ kind: "default", path: LOGIN }, { label: "Login", locked: true }),
    {
      state: "locked",
      message: `the secret store's default collection "Login" (${LOGIN}) is locked: the store ` +
        "must be unlocked before secrets can be read or changed",
    },
  );
  assert.deepEqual(storeStatusOf({ kind: "first", path: OTHER }, { label: "", locked: false }), {
    state: "unlocked",
    message: `the secret store's first collection (no default alias is set) "other" (${OTHER}) ` +
      "is unlocked",
  });
});
