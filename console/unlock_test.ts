/**
 * The store passphrase prompt on the console, end to end inside the console: a ConsoleApp on a
 * fake VT, clock and daemon (`MemoryAdmin`, whose store is locked), fed raw input bytes as the
 * terminal delivers them, drawing into `@xterm/headless`. The assertions are about what a person
 * sees on the screen and about what reaches the daemon; the passphrase must never be drawn.
 *
 * @module
 */

import assert from "node:assert/strict";
import { consoleOnXterm, type Harness, MemoryAdmin } from "./app_fakes.ts";
import { approvalCode } from "./approval_code.ts";
import { secretRead } from "./test_support.ts";

const NOW = 1_700_000_000_000;
const RIGHT = "correct horse battery";
const WRONG = "wrong horse battery";

/** Types `text` on the console (raw bytes, one read), after the arming delay. */
async function type(h: Harness, text: string): Promise<void> {
  await h.advance(800);
  h.app.feed(new TextEncoder().encode(text));
  await h.advance(100);
}

function lockedAdmin(): MemoryAdmin {
  const admin = new MemoryAdmin();
  admin.storeLocked = true;
  admin.storePassword = RIGHT;
  return admin;
}

Deno.test("unlock: the console asks for the passphrase, never shows it, refuses a wrong one, takes the right one", async () => {
  const admin = lockedAdmin();
  const { h, screen, settleScreen } = await consoleOnXterm([], { admin });
  try {
    await settleScreen();
    let text = screen.lines().join("\n");
    assert.match(screen.lines()[0], /unlock the secret store \| 0 pending +[0-9:]+ $/);
    assert.match(text, /UNLOCK THE SECRET STORE/);
    assert.match(
      text,
      /Type the store passphrase .*, then Enter\. *\nNothing is shown while you type\./,
    );
    assert.match(text, /store passphrase: \(nothing typed\)/);
    assert.match(screen.lines().at(-1)!, /Enter unlock .*Esc\/Ctrl-U clear/);

    await type(h, WRONG.slice(0, 5));
    await settleScreen();
    const partial = screen.lines().slice(1).join("\n"); // (the title has the clock)
    assert.match(partial, /store passphrase: \*{8}/);
    await type(h, WRONG.slice(5));
    await settleScreen();
    assert.equal(screen.lines().slice(1).join("\n"), partial, "more typed: nothing changes");
    await type(h, "\r");
    await settleScreen();
    text = screen.lines().join("\n");
    assert.match(text, /wrong passphrase: the store is still locked\. Type it again\./);
    assert.match(text, /store passphrase: \(nothing typed\)/);
    assert.ok(admin.storeLocked, "still locked");
    assert.deepEqual(admin.passwords, [WRONG]);
    assert.ok(admin.passwordArrays[0].every((b) => b === 0), "the bytes sent were zeroed after");

    // A typo, erased with Backspace; Enter sends the rest.
    await type(h, "correct horsX\x7fe battery\r");
    await settleScreen();
    text = screen.lines().join("\n");
    assert.equal(admin.storeLocked, false);
    assert.deepEqual(admin.passwords, [WRONG, RIGHT]);
    assert.match(screen.lines()[0], /pending requests \| 0 pending/);
    assert.doesNotMatch(screen.lines()[0], /STORE LOCKED/);
    assert.match(text, /the secret store is unlocked/);
    assert.doesNotMatch(text, /UNLOCK THE SECRET STORE/);

    // Nothing typed ever reached the terminal.
    const out = h.term.text();
    for (const secret of [RIGHT, WRONG, "correct", "horse", "battery", "horsX"]) {
      assert.ok(!out.includes(secret), `"${secret}" was written to the terminal`);
    }
  } finally {
    h.app.stop();
  }
});

Deno.test("unlock: Esc and Ctrl-U clear what was typed; Esc with nothing typed goes to the list, p comes back", async () => {
  const admin = lockedAdmin();
  const { h, screen, settleScreen } = await consoleOnXterm([], { admin });
  try {
    await type(h, "abc\x15");
    await type(h, "\r");
    await settleScreen();
    assert.match(screen.lines().join("\n"), /type the store passphrase, then press Enter/);
    await type(h, "abc\x1b");
    await type(h, "\r");
    assert.deepEqual(admin.passwords, [], "nothing was sent");
    await type(h, "\x1b");
    await settleScreen();
    let text = screen.lines().join("\n");
    assert.match(screen.lines()[0], /pending requests .*STORE LOCKED/);
    assert.match(
      text,
      /STORE LOCKED +secret requests cannot be approved until it is unlocked; p: type/,
    );
    assert.match(text, /the store stays locked; p types its passphrase/);
    await h.advance(5_000); // polls: the prompt does not come back by itself
    await settleScreen();
    assert.doesNotMatch(screen.lines()[0], /unlock the secret store/);
    await type(h, "p");
    await settleScreen();
    assert.match(screen.lines()[0], /unlock the secret store/);
    await type(h, `${RIGHT}\r`);
    await settleScreen();
    assert.equal(admin.storeLocked, false);
    text = screen.lines().join("\n");
    assert.doesNotMatch(text, /STORE LOCKED/);
  } finally {
    h.app.stop();
  }
});

Deno.test("unlock: a secret request waits on a locked store, shows 'store locked', is approvable once unlocked elsewhere", async () => {
  const admin = lockedAdmin();
  const view = secretRead(NOW);
  const { h, screen, settleScreen } = await consoleOnXterm([view], { admin });
  try {
    await settleScreen();
    assert.match(screen.lines().join("\n"), /1 request pending \(1 for secrets: approvable once/);
    await type(h, "\x1b");
    await settleScreen();
    const row = screen.lines().find((l) => l.includes("3c4d5e6f"))!;
    assert.match(row, /secret\.read .*STORE LOCKED read "Mail password"/);
    await type(h, "\r");
    await settleScreen();
    let text = screen.lines().join("\n");
    const code = approvalCode(view.id, view.digest);
    assert.match(screen.lines()[2], /REQUEST 3c4d5e6f secret\.read .*STORE LOCKED: not approvable/);
    assert.match(text, /THE SECRET STORE IS LOCKED: this request cannot be approved until it is/);
    assert.doesNotMatch(text, new RegExp(code.split("").join(" ")), "no approval code shown");
    await type(h, code.toLowerCase());
    await settleScreen();
    assert.match(screen.lines().join("\n"), /cannot approve: the secret store is locked/);
    assert.ok(!admin.calls.some((c) => c.member === "approve"));

    // The PAM hand-off (or ctl unlock) opens the store: the console follows by itself.
    admin.openStoreElsewhere();
    await settleScreen();
    text = screen.lines().join("\n");
    assert.doesNotMatch(text, /STORE LOCKED/);
    assert.match(screen.lines()[2], new RegExp(`approve: type ${code.split("").join(" ")}`));
    await type(h, code.toLowerCase());
    assert.deepEqual(admin.calls.find((c) => c.member === "approve")?.args, [
      view.id,
      view.digest,
    ]);
  } finally {
    h.app.stop();
  }
});

Deno.test("unlock: a store opened behind the daemon's back (no signal) closes the prompt at the next poll", async () => {
  const admin = lockedAdmin();
  const { h, screen, settleScreen } = await consoleOnXterm([], { admin });
  try {
    await type(h, "half typed");
    admin.openStoreElsewhere({ signal: false });
    await h.advance(2_500);
    await settleScreen();
    assert.doesNotMatch(screen.lines()[0], /unlock the secret store|STORE LOCKED/);
    assert.match(screen.lines().join("\n"), /the secret store is unlocked/);
    // What was half typed is gone: the next keys are list keys, not passphrase.
    await type(h, "h");
    await settleScreen();
    assert.match(screen.lines()[0], /\| history \|/);
    assert.deepEqual(admin.passwords, []);
  } finally {
    h.app.stop();
  }
});

Deno.test("unlock: keys typed while an unlock is in flight are not taken", async () => {
  const admin = lockedAdmin();
  const gate = Promise.withResolvers<void>();
  admin.unlockGate = gate.promise;
  const { h, screen, settleScreen } = await consoleOnXterm([], { admin });
  try {
    await type(h, `${RIGHT}\r`);
    await settleScreen();
    assert.match(screen.lines().join("\n"), /store passphrase: \(unlocking\.\.\.\)/);
    await type(h, "more\r");
    await settleScreen();
    assert.match(screen.lines().join("\n"), /unlocking: wait for the answer/);
    gate.resolve();
    await settleScreen();
    assert.deepEqual(admin.passwords, [RIGHT], "one call, with what was typed before Enter");
    assert.equal(admin.storeLocked, false);
  } finally {
    h.app.stop();
  }
});

Deno.test("unlock: a store that takes no passphrase here gets no prompt", async () => {
  const admin = lockedAdmin();
  admin.passwordUnlock = false;
  const { h, screen, settleScreen } = await consoleOnXterm([], { admin });
  try {
    await settleScreen();
    const text = screen.lines().join("\n");
    assert.match(screen.lines()[0], /pending requests .*STORE LOCKED/);
    assert.match(text, /it opens only with its own\s+tools/);
    await type(h, "p");
    await settleScreen();
    assert.match(screen.lines().join("\n"), /cannot take a passphrase here/);
    assert.doesNotMatch(screen.lines()[0], /unlock the secret store/);
  } finally {
    h.app.stop();
  }
});

Deno.test("unlock: typing on while the store opens elsewhere: the rest of the passphrase never reaches the list", async () => {
  const admin = lockedAdmin();
  const view = secretRead(NOW);
  const { h, screen, settleScreen } = await consoleOnXterm([view], { admin });
  try {
    await h.advance(800);
    const typeSlowly = async (text: string) => {
      for (const ch of text) {
        h.app.feed(new TextEncoder().encode(ch));
        await h.advance(200);
      }
    };
    await typeSlowly("pass");
    admin.openStoreElsewhere();
    await typeSlowly("word ddd DqLhy");
    await settleScreen();
    const text = screen.lines().join("\n");
    assert.match(screen.lines()[0], /pending requests \| 1 pending/);
    assert.match(text, /keys are ignored until you stop typing/);
    assert.deepEqual(
      admin.calls.filter((c) => !["list", "get"].includes(c.member)).map((c) => c.member),
      [],
      "nothing denied, locked or quit",
    );
    assert.equal(admin.passwords.length, 0);
    // After a pause the list works as always.
    await type(h, "d");
    assert.deepEqual(admin.calls.find((c) => c.member === "deny")?.args[0], view.id);
  } finally {
    h.app.stop();
  }
});

Deno.test("create: a store without a keyring asks for a new passphrase twice; empty and mismatched pairs are refused, both buffers zeroed", async () => {
  const admin = new MemoryAdmin();
  admin.storeLocked = true;
  admin.noKeyring = true;
  const storage: [Uint8Array, Uint8Array] = [new Uint8Array(64), new Uint8Array(64)];
  const zeroed = () => storage.every((b) => b.every((x) => x === 0));
  const { h, screen, settleScreen } = await consoleOnXterm([], {
    admin,
    passphraseStorage: storage,
  });
  try {
    await settleScreen();
    let text = screen.lines().join("\n");
    assert.match(screen.lines()[0], /create the secret store \| 0 pending/);
    assert.match(text, /CREATE THE SECRET STORE/);
    assert.match(text, /The secret store has no keyring yet/);
    assert.match(text, /Create the secret store: choose a passphrase, press Enter, then type it/);
    assert.match(text, /new passphrase: \(nothing typed\)/);
    assert.match(screen.lines().at(-1)!, /Enter next /);

    // An empty passphrase is refused.
    await type(h, "\r");
    await settleScreen();
    assert.match(screen.lines().join("\n"), /an empty passphrase is refused/);

    // Two different ones: "the two passphrases differ", nothing sent, start over.
    await type(h, "first try\r");
    await settleScreen();
    text = screen.lines().join("\n");
    assert.match(text, /now type the same passphrase again/);
    assert.match(text, /type it again: +\(nothing typed\)/);
    assert.match(screen.lines().at(-1)!, /Enter create /);
    assert.ok(!zeroed(), "the first passphrase is kept while it is typed again");
    await type(h, "first tyr\r");
    await settleScreen();
    text = screen.lines().join("\n");
    assert.match(text, /the two passphrases differ: nothing was created\. Choose a passphrase/);
    assert.match(text, /new passphrase: \(nothing typed\)/);
    assert.deepEqual(admin.passwords, [], "nothing was sent");
    assert.ok(zeroed(), "both buffers were zeroed");
    assert.equal(admin.storeLocked, true);

    // The same one twice (typed ahead in one read, a typo erased): created.
    await type(h, "new store pass\rnew store pasX\x7fs\r");
    await settleScreen();
    text = screen.lines().join("\n");
    assert.deepEqual(admin.passwords, ["new store pass"]);
    assert.ok(admin.passwordArrays[0].every((b) => b === 0), "the bytes sent were zeroed after");
    assert.ok(zeroed(), "both buffers were zeroed");
    assert.equal(admin.storeLocked, false);
    assert.match(screen.lines()[0], /pending requests \| 0 pending/);
    assert.match(text, /the secret store is created and unlocked/);
    assert.doesNotMatch(text, /CREATE THE SECRET STORE|NO SECRET STORE YET|NO STORE YET/);

    const out = h.term.text();
    for (const secret of ["first try", "first tyr", "new store pass", "pasX"]) {
      assert.ok(!out.includes(secret), `"${secret}" was written to the terminal`);
    }
  } finally {
    h.app.stop();
  }
});
