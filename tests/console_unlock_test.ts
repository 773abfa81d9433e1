/**
 * The store passphrase typed on the console, end to end on real components: the console
 * entrypoint with its production flags on a pseudo-terminal (its screen read through a headless
 * terminal emulator, keys typed into the terminal), the real daemon, gnome-keyring as the store,
 * and `secret-tool` reading through the agent.
 *
 * What a user sees: a secret read waits for approval; the store gets locked (the way its own
 * timeout or tools would lock it); the console asks for the store passphrase by itself, shows the
 * waiting read as "store locked" and refuses its approval code; a wrong passphrase is refused and
 * the store stays locked; the right one unlocks it, and the read, approved with its code on the
 * console, gets the secret. The passphrase never appears on the terminal or in the daemon's log.
 *
 * And a fresh companion, whose gnome-keyring has no login keyring yet (only its in-memory
 * `session` collection): the store is reported locked and to be created, secret requests are
 * refused with "no keyring yet", the console asks for a new passphrase twice, refuses a pair
 * that differs, creates the keyring with a matching pair, and a store and lookup approved on the
 * console round-trip.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DEMO_KEYRING_PASSWORD,
  lockStore,
  type SecretStack,
  secretStack,
} from "../dev/secret_stack.ts";
import { type PtyConsole, startConsoleOnPty } from "../dev/console_pty.ts";
import { approvalCode } from "../console/approval_code.ts";
import { DispatcherClient } from "../lib/dispatcher_client.ts";
import { DEFAULT_METADATA_TTL_MS } from "../agent/cached_port.ts";
import type { RequestView } from "../lib/protocol.ts";
import { Approver, exec } from "./support.ts";

const WRONG = "not the keyring password";

function secretTool(s: SecretStack, args: string[], stdin?: string) {
  return exec("secret-tool", args, { env: s.clientEnv, stdin, timeoutMs: 60_000 });
}

/** The first pending request, once there is one. */
async function pending(s: SecretStack): Promise<RequestView> {
  const end = Date.now() + 20_000;
  while (Date.now() < end) {
    const [summary] = await s.admin.list();
    if (summary) return await s.admin.get(summary.id);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("no request became pending");
}

Deno.test("console: a locked store asks for its passphrase on the console; a wrong one is refused, the right one opens it and the read succeeds", async () => {
  const s = await secretStack();
  let con: PtyConsole | null = null;
  let lookup: ReturnType<typeof secretTool> | null = null;
  try {
    const approver = new Approver(s.admin, () => "approve");
    try {
      const stored = await secretTool(s, ["store", "--label=Console unlock", "k", "vt"], "kept");
      assert.equal(stored.code, 0, stored.stderr);
    } finally {
      await approver.stop();
    }
    // A read that waits for the human, and then the store locks under it.
    lookup = secretTool(s, ["lookup", "k", "vt"]);
    const view = await pending(s);
    assert.equal(view.kind, "secret.read");
    await lockStore(s);
    assert.equal((await s.admin.status()).state, "locked");

    // No arming delay: the test types as soon as the screen shows what it waits for.
    con = await startConsoleOnPty(s.companionBus, { env: { SD_CONSOLE_ARM_MS: "0" } });
    const short = view.id.slice(0, 8);
    const code = approvalCode(view.id, view.digest);
    await con.until("the passphrase prompt", (t) => t.includes("UNLOCK THE SECRET STORE"));
    let screen = con.screen();
    assert.match(screen, /store passphrase: \(nothing typed\)/);
    assert.match(screen, /1 request pending \(1 for secrets: approvable once the store is/);
    assert.match(screen, /it approves no request/);

    // The waiting read, seen from the list and from its own screen: store locked, no code.
    await con.type("\x1b");
    await con.until("the list", (t) => t.includes(`${short}  secret.read`));
    assert.match(con.screen(), new RegExp(`${short} .*STORE LOCKED read "Console unlock"`));
    await con.type("\r");
    await con.until("the request", (t) => t.includes(`REQUEST ${short}`));
    await con.until("the request's content", (t) => /Label: +Console unlock/.test(t));
    assert.match(con.screen(), /THE SECRET STORE IS LOCKED: this request cannot be approved/);
    assert.doesNotMatch(con.screen(), new RegExp(`approve: type ${[...code].join(" ")}`));
    await con.type(code.toLowerCase());
    await con.until("the refusal", (t) => t.includes("cannot approve: the secret store is locked"));
    assert.equal((await s.admin.get(view.id)).state, "pending", "still pending, not approved");

    // Back to the list, p: the prompt. A wrong passphrase first.
    await con.type("\x1b");
    await con.until("the list", (t) => t.includes(`${short}  secret.read`));
    await con.type("p");
    await con.until("the passphrase prompt", (t) => t.includes("UNLOCK THE SECRET STORE"));
    await con.type(`${WRONG}\r`);
    await con.until("the wrong passphrase", (t) => t.includes("wrong passphrase: the store is"));
    assert.equal((await s.admin.status()).state, "locked", "the store stays locked");
    assert.match(con.screen(), /store passphrase: \(nothing typed\)/);

    // The right one: the prompt goes, the store is open.
    await con.type(`${DEMO_KEYRING_PASSWORD}\r`);
    await con.until(
      "the unlocked store",
      (t) => t.includes("the secret store is unlocked") && !t.includes("STORE LOCKED"),
    );
    screen = con.screen();
    assert.doesNotMatch(screen, /STORE LOCKED|UNLOCK THE SECRET STORE/);
    assert.equal((await s.admin.status()).state, "unlocked");

    // The read is approvable now, with its code, and gets the secret.
    await con.type("\r");
    await con.until("the approval code", (t) => t.includes(`approve: type ${[...code].join(" ")}`));
    await con.type(code.toLowerCase());
    const read = await lookup;
    lookup = null;
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.stdout, "kept");

    // The passphrases never reached the terminal or the daemon's log.
    const out = new TextDecoder().decode(con.output());
    for (const secret of [DEMO_KEYRING_PASSWORD, WRONG]) {
      assert.ok(!out.includes(secret), "a passphrase was written to the terminal");
      assert.ok(!(await s.stack.log("daemon")).includes(secret), "a passphrase was logged");
    }
  } finally {
    await con?.stop();
    await s.close();
    await lookup?.catch(() => {});
  }
});

Deno.test("console: a store unlocked elsewhere (ctl unlock, the PAM hand-off) leaves the prompt by itself", async () => {
  const s = await secretStack();
  let con: PtyConsole | null = null;
  try {
    await lockStore(s);
    con = await startConsoleOnPty(s.companionBus, { env: { SD_CONSOLE_ARM_MS: "0" } });
    await con.until("the passphrase prompt", (t) => t.includes("UNLOCK THE SECRET STORE"));
    await con.type("half typed");
    await s.admin.unlockStore(new TextEncoder().encode(DEMO_KEYRING_PASSWORD));
    await con.until(
      "the list",
      (t) => t.includes("the secret store is unlocked") && t.includes("pending requests"),
    );
    assert.doesNotMatch(con.screen(), /STORE LOCKED|UNLOCK THE SECRET STORE/);
    assert.match(con.screen(), /no pending requests/);
  } finally {
    await con?.stop();
    await s.close();
  }
});

/** The store's state as the desktop side asks for it (`Dispatcher1.StoreStatus`). */
async function dispatcherStoreStatus(s: SecretStack) {
  const client = await DispatcherClient.connect({ address: s.systemBus.address, uid: Deno.uid()! });
  try {
    return await client.storeStatus();
  } finally {
    client.close();
  }
}

/** Opens the pending request `view` on the console and approves it with its code. */
async function approveOnConsole(con: PtyConsole, view: RequestView): Promise<void> {
  const short = view.id.slice(0, 8);
  const code = approvalCode(view.id, view.digest);
  const onList = (t: string) => t.includes("| pending requests |");
  // Back to the list first (and see it there: an Esc still unread would join the Enter).
  if (!onList(con.screen())) await con.type("\x1b");
  await con.until("the request in the list", (t) => onList(t) && t.includes(short), 30_000);
  await con.type("\r");
  await con.until(
    "the approval code",
    (t) => t.includes(`REQUEST ${short}`) && t.includes(`approve: type ${[...code].join(" ")}`),
    30_000,
  );
  await con.type(code.toLowerCase());
}

Deno.test("console: a fresh store without a keyring is created on the console with a passphrase typed twice; then a secret round-trips", async () => {
  const s = await secretStack({ loginKeyring: false });
  const PASSPHRASE = "first store passphrase";
  const OTHER = "first store passphrasf";
  let con: PtyConsole | null = null;
  let pendingTool: ReturnType<typeof secretTool> | null = null;
  try {
    // What the daemon says: locked, to be created; gnome-keyring's session collection does not
    // count, and nothing is written into it.
    const fresh = await s.admin.status();
    assert.equal(fresh.state, "locked");
    assert.equal(fresh.creates, true);
    assert.equal(fresh.passwordUnlock, true);
    assert.match(fresh.message, /no keyring yet: the first unlock with a store passphrase/);
    const desktop = await dispatcherStoreStatus(s);
    assert.equal(desktop.state, "locked");
    assert.match(desktop.message, /no keyring yet/);
    const early = await secretTool(s, ["store", "--label=Too early", "k", "early"], "x");
    const earlyAt = performance.now();
    assert.notEqual(early.code, 0);
    assert.match(early.stderr, /no keyring yet: the first unlock with a store passphrase/);
    assert.deepEqual(await s.admin.list(), [], "refused at once, nothing pending");

    con = await startConsoleOnPty(s.companionBus, { env: { SD_CONSOLE_ARM_MS: "0" } });
    await con.until("the create prompt", (t) => t.includes("CREATE THE SECRET STORE"), 30_000);
    let screen = con.screen();
    assert.match(screen, /create the secret store \|/);
    assert.match(screen, /Create the secret store: choose a passphrase/);
    assert.match(screen, /new passphrase: \(nothing typed\)/);
    assert.match(screen, /it approves no request/);

    // Two passphrases that differ: refused, nothing created, start over.
    await con.type(`${PASSPHRASE}\r`);
    await con.until("the second typing", (t) => t.includes("now type the same passphrase again"));
    await con.type(`${OTHER}\r`);
    await con.until("the mismatch", (t) => t.includes("the two passphrases differ"));
    assert.match(con.screen(), /new passphrase: \(nothing typed\)/);
    assert.equal((await s.admin.status()).creates, true, "nothing was created");

    // The same one twice: the keyring is created, unlocked, and is the default collection.
    await con.type(`${PASSPHRASE}\r`);
    await con.until("the second typing", (t) => t.includes("now type the same passphrase again"));
    await con.type(`${PASSPHRASE}\r`);
    await con.until(
      "the created store",
      (t) => t.includes("the secret store is created and unlocked"),
      30_000,
    );
    screen = con.screen();
    assert.doesNotMatch(screen, /CREATE THE SECRET STORE|NO (SECRET )?STORE YET|STORE LOCKED/);
    const created = await s.admin.status();
    assert.equal(created.state, "unlocked");
    assert.equal(created.creates, false);
    const open = await dispatcherStoreStatus(s);
    assert.equal(open.state, "unlocked");
    assert.match(
      open.message,
      /default collection "Login" \(\/org\/freedesktop\/secrets\/collection\/Login\) is unlocked/,
    );

    // A secret stored and read back, each approved on the console. (The agent keeps the
    // answers it got for the early store, "no default collection" among them, for its metadata
    // lifetime: the store is created on the console, which the agent is not told about.)
    const stale = earlyAt + DEFAULT_METADATA_TTL_MS + 100 - performance.now();
    if (stale > 0) await new Promise((r) => setTimeout(r, stale));
    pendingTool = secretTool(s, ["store", "--label=Created here", "k", "fresh"], "kept safe");
    const write = await pending(s);
    assert.equal(write.kind, "secret.write");
    assert.equal(write.secret?.collection?.path, "/org/freedesktop/secrets/collection/Login");
    await approveOnConsole(con, write);
    const stored = await pendingTool;
    pendingTool = null;
    assert.equal(stored.code, 0, stored.stderr);

    pendingTool = secretTool(s, ["lookup", "k", "fresh"]);
    const read = await pending(s);
    assert.equal(read.kind, "secret.read");
    await approveOnConsole(con, read);
    const looked = await pendingTool;
    pendingTool = null;
    assert.equal(looked.code, 0, looked.stderr);
    assert.equal(looked.stdout, "kept safe");

    // The passphrases never reached the terminal or the daemon's log.
    const out = new TextDecoder().decode(con.output());
    for (const secret of [PASSPHRASE, OTHER]) {
      assert.ok(!out.includes(secret), "a passphrase was written to the terminal");
      assert.ok(!(await s.stack.log("daemon")).includes(secret), "a passphrase was logged");
    }
  } finally {
    await con?.stop();
    await s.close();
    await pendingTool?.catch(() => {});
  }
});
