import assert from "node:assert/strict";
import { type ClientReport, Errors, READ_WINDOW_MS, type VerifiedCaller } from "../lib/protocol.ts";
import { ALIAS_PREFIX } from "../lib/secret_service.ts";
import { MEMORY_LOGIN, MEMORY_SESSION, MemoryBackend } from "./memory_backend.ts";
import type { ProcReader } from "./proc.ts";
import { type Completion, RequestError, RequestManager } from "./requests.ts";
import { type Asker, parseClientReport, psArgs, SecretRequests } from "./secret_requests.ts";
import { FakeClock, FakeGpg, MemoryHistory } from "./test_support.ts";

const AGENT = ":1.7";
const CALLER: VerifiedCaller = {
  busName: AGENT,
  uid: 1000,
  pid: 77,
  cmdline: ["deno run agent/main.ts"],
  exe: null,
};
const enc = (s: string) => new TextEncoder().encode(s);

function client(n = 1, cmdline = ["secret-tool", "lookup", "k", "v"]): ClientReport {
  return {
    busName: `:1.${100 + n}`,
    pid: 4000 + n,
    uid: 1000,
    exe: "/usr/bin/secret-tool",
    cmdline,
    cwd: "/",
  };
}

/** ps as the daemon would see it: every pid 4000+ runs secret-tool as uid 1000. */
const proc: ProcReader = {
  info: (pid) =>
    Promise.resolve(
      pid >= 4000
        ? { uid: 1000, cmdline: ["secret-tool lookup k v"], exe: null, started: null }
        : null,
    ),
};

async function setup() {
  const clock = new FakeClock();
  const backend = new MemoryBackend({ now: () => Math.floor(clock.now() / 1000) });
  const completed: { id: string; requester: string; c: Completion }[] = [];
  const manager = new RequestManager({
    gpg: new FakeGpg(),
    history: new MemoryHistory(),
    clock,
    ttlMs: 60_000,
    onCompleted: (id, requester, c) => completed.push({ id, requester, c }),
  });
  const log: string[] = [];
  const secrets = new SecretRequests(backend, {
    manager,
    clientUid: 1000,
    proc,
    log: (l) => log.push(l),
  });
  const item = await backend.createItem(MEMORY_LOGIN, {
    label: "mail password",
    attributes: { service: "mail", user: "alice" },
    secret: { value: enc("hunter2"), contentType: "text/plain" },
    replace: false,
  });
  const asker = (n = 1, cmdline?: string[]): Asker => ({
    caller: CALLER,
    requester: AGENT,
    client: client(n, cmdline),
  });
  const settle = () => new Promise((r) => setTimeout(r, 0));
  return { clock, backend, manager, secrets, completed, item, asker, log, settle };
}

async function refused(p: Promise<unknown> | (() => unknown), name: string): Promise<void> {
  await assert.rejects(
    async () => await (typeof p === "function" ? p() : p),
    (err: unknown) => err instanceof RequestError && err.dbusName === name,
  );
}

Deno.test("an approved read hands the value to the agent that asked, within the window", async () => {
  const { secrets, manager, completed, item, asker, clock, settle, log } = await setup();
  const id = await secrets.requestRead([item], asker());
  const view = manager.get(id);
  assert.equal(view.kind, "secret.read");
  assert.equal(view.secret?.operation, "read");
  assert.equal(view.secret?.items[0].label, "mail password");
  assert.deepEqual(view.secret?.items[0].attributes, { service: "mail", user: "alice" });
  assert.equal(view.secret?.collection?.path, MEMORY_LOGIN);
  assert.equal(view.secret?.clientCheck.consistent, true);
  // Nothing can be read while pending.
  await refused(secrets.getSecrets(id, { requester: AGENT, items: [item] }), Errors.NotApproved);

  manager.approve(id, view.digest);
  await settle();
  assert.equal(completed[0].c.outcome, "done");
  assert.deepEqual(completed[0].c.items, [item]);
  const values = await secrets.getSecrets(id, { requester: AGENT, items: [item] });
  assert.equal(new TextDecoder().decode(values.get(item)!.value), "hunter2");
  // libsecret reads twice: the second read in the window is served too.
  await secrets.getSecrets(id, { requester: AGENT, items: [item] });
  // Another connection cannot use this approval.
  await refused(
    secrets.getSecrets(id, { requester: ":1.8", items: [item] }),
    Errors.NoSuchRequest,
  );
  clock.advance(READ_WINDOW_MS + 1);
  await refused(secrets.getSecrets(id, { requester: AGENT, items: [item] }), Errors.NotApproved);
  assert.ok(log.every((l) => !l.includes("hunter2")), "no value in the log");
});

Deno.test("a read approval covers only its items and never a write", async () => {
  const { secrets, manager, backend, item, asker, settle } = await setup();
  const other = await backend.createItem(MEMORY_LOGIN, {
    label: "other",
    attributes: { service: "other" },
    secret: { value: enc("s2"), contentType: "text/plain" },
    replace: false,
  });
  const id = await secrets.requestRead([item], asker());
  manager.approve(id, manager.get(id).digest);
  await settle();
  await refused(secrets.getSecrets(id, { requester: AGENT, items: [other] }), Errors.NotApproved);
  // A delete is its own request; the read approval does not perform it.
  const del = await secrets.requestDelete(item, asker());
  assert.equal(manager.get(del).state, "pending");
  assert.equal((await backend.getItems([item])).length, 1);
  manager.deny(del, "no");
  await settle();
  assert.equal((await backend.getItems([item])).length, 1);
  await refused(secrets.getSecrets(del, { requester: AGENT, items: [item] }), Errors.NotApproved);
});

Deno.test("create: approved stores the item, which may be read back; denied stores nothing", async () => {
  const { secrets, manager, backend, completed, asker, settle } = await setup();
  const secret = { value: enc("tok3n"), contentType: "text/plain" };
  const denied = await secrets.requestCreateItem(MEMORY_LOGIN, {
    label: "api token",
    attributes: { service: "api" },
    secret,
    replace: true,
    asker: asker(),
  });
  assert.equal(manager.get(denied).secret?.secretSize, 5);
  assert.equal(JSON.stringify(manager.get(denied)).includes("tok3n"), false, "value not in view");
  manager.deny(denied, "");
  await settle();
  assert.equal((await backend.searchItems({ service: "api" }, null)).length, 0);

  const id = await secrets.requestCreateItem("/org/freedesktop/secrets/aliases/default", {
    label: "api token",
    attributes: { service: "api" },
    secret,
    replace: true,
    asker: asker(),
  });
  assert.equal(manager.get(id).kind, "secret.write");
  manager.approve(id, manager.get(id).digest);
  await settle();
  const done = completed.find((c) => c.id === id)!;
  assert.equal(done.c.outcome, "done");
  assert.ok(done.c.item);
  const found = await backend.searchItems({ service: "api" }, null);
  assert.deepEqual(found.map((i) => i.path), [done.c.item]);
  const back = await secrets.getSecrets(id, { requester: AGENT, items: [done.c.item!] });
  assert.equal(new TextDecoder().decode(back.get(done.c.item!)!.value), "tok3n");
});

Deno.test("set-secret, set-properties and delete act only after approval", async () => {
  const { secrets, manager, backend, item, asker, settle } = await setup();
  const set = await secrets.requestSetSecret(item, {
    secret: { value: enc("new"), contentType: "text/plain" },
    asker: asker(),
  });
  const props = await secrets.requestSetProperties(item, { label: "renamed", asker: asker() });
  const del = await secrets.requestDelete(item, asker());
  assert.equal(manager.get(del).kind, "secret.delete");
  assert.equal(
    new TextDecoder().decode((await backend.getSecrets([item])).get(item)!.value),
    "hunter2",
  );
  manager.approve(set, manager.get(set).digest);
  manager.approve(props, manager.get(props).digest);
  await settle();
  assert.equal(
    new TextDecoder().decode((await backend.getSecrets([item])).get(item)!.value),
    "new",
  );
  assert.equal((await backend.getItems([item]))[0].label, "renamed");
  manager.approve(del, manager.get(del).digest);
  await settle();
  assert.deepEqual(await backend.getItems([item]), []);
});

Deno.test("a locked or missing store refuses requests with a clear error", async () => {
  const { secrets, backend, item, asker } = await setup();
  backend.lock();
  await refused(secrets.requestRead([item], asker()), Errors.StoreLocked);
  assert.equal((await secrets.status()).state, "locked");
  backend.unlock();
  backend.setUnavailable(true);
  await refused(secrets.requestRead([item], asker()), Errors.StoreUnavailable);
  assert.equal((await secrets.status()).state, "unavailable");
});

Deno.test("a store without a keyring yet: status locked, every secret request refused, nothing written into the session collection", async () => {
  const manager = new RequestManager({ gpg: new FakeGpg(), history: new MemoryHistory() });
  try {
    const backend = new MemoryBackend({ keyring: false });
    const secrets = new SecretRequests(backend, { manager, clientUid: 1000, proc });
    const asker: Asker = { caller: CALLER, requester: AGENT, client: client() };
    const status = await secrets.status();
    assert.equal(status.state, "locked");
    assert.equal(status.noKeyring, true);
    assert.match(status.message, /no keyring yet: the first unlock with a store passphrase/);
    // Something already in gnome-keyring's session collection (put there by its own tools).
    const there = await backend.createItem(MEMORY_SESSION, {
      label: "in memory only",
      attributes: { k: "v" },
      secret: { value: enc("x"), contentType: "text/plain" },
      replace: false,
    });
    const item = {
      label: "new",
      attributes: { service: "mail" },
      secret: { value: enc("s3cret"), contentType: "text/plain" },
      replace: false,
      asker,
    };
    const noKeyring = (err: unknown) =>
      err instanceof RequestError && err.dbusName === Errors.StoreLocked &&
      /store locked: the secret store has no keyring yet: the first unlock with a store passphrase creates it/
        .test(err.message);
    for (const collection of [`${ALIAS_PREFIX}default`, MEMORY_SESSION, `${ALIAS_PREFIX}session`]) {
      await assert.rejects(secrets.requestCreateItem(collection, item), noKeyring, collection);
    }
    await assert.rejects(secrets.requestRead([there], asker), noKeyring);
    await assert.rejects(secrets.requestDelete(there, asker), noKeyring);
    assert.deepEqual(manager.list(), [], "no request was raised");
    assert.deepEqual((await backend.searchItems({}, MEMORY_SESSION)).map((i) => i.path), [there]);

    // Created (by the first unlock): the default alias takes writes again.
    backend.createKeyring();
    assert.equal((await secrets.status()).state, "unlocked");
    const id = await secrets.requestCreateItem(`${ALIAS_PREFIX}default`, item);
    assert.equal(manager.get(id).secret?.collection?.path, MEMORY_LOGIN);
  } finally {
    manager.shutdown("test over");
  }
});

Deno.test("a read approved after the store was locked fails instead of hanging", async () => {
  const { secrets, manager, backend, item, asker, completed, settle } = await setup();
  const id = await secrets.requestRead([item], asker());
  manager.approve(id, manager.get(id).digest);
  await settle();
  backend.lock();
  await refused(secrets.getSecrets(id, { requester: AGENT, items: [item] }), Errors.StoreLocked);
  assert.equal(completed[0].c.outcome, "done");
});

Deno.test("malformed input is refused and nothing is created", async () => {
  const { secrets, manager, item, asker } = await setup();
  await refused(secrets.requestRead(["/not/an/item"], asker()), Errors.InvalidArgs);
  await refused(secrets.requestRead([], asker()), Errors.InvalidArgs);
  await refused(
    secrets.requestRead([`${MEMORY_LOGIN}/999`], asker()),
    Errors.NoSuchObject,
  );
  await refused(
    secrets.requestCreateItem(MEMORY_LOGIN, {
      label: "big",
      attributes: {},
      secret: { value: new Uint8Array(1024 * 1024 + 1), contentType: "text/plain" },
      replace: false,
      asker: asker(),
    }),
    Errors.InvalidArgs,
  );
  await refused(
    secrets.requestCreateItem("/org/freedesktop/secrets/collection/nope", {
      label: "x",
      attributes: {},
      secret: { value: enc("x"), contentType: "text/plain" },
      replace: false,
      asker: asker(),
    }),
    Errors.NoSuchObject,
  );
  await refused(
    secrets.requestSetProperties(item, { asker: asker() }),
    Errors.InvalidArgs,
  );
  assert.deepEqual(manager.list(), []);
  await refused(() => parseClientReport("{"), Errors.InvalidArgs);
  await refused(() => parseClientReport(`{"pid": 1}`), Errors.InvalidArgs);
  await refused(() => parseClientReport(`{"busName": ":1.1", "pid": -1}`), Errors.InvalidArgs);
  await refused(
    () => parseClientReport(`{"busName": ":1.1", "cmdline": [1]}`),
    Errors.InvalidArgs,
  );
  assert.deepEqual(parseClientReport(`{"busName": ":1.1", "extra": true}`), {
    busName: ":1.1",
    pid: null,
    uid: null,
    exe: null,
    cmdline: null,
    cwd: null,
  });
});

Deno.test("each desktop client has its own flood limit behind the one agent connection", async () => {
  const { secrets, manager, item, asker } = await setup();
  for (let n = 0; n < 10; n++) await secrets.requestRead([item], asker(n));
  // Client 1 has one; 15 more reach its limit of 16.
  for (let n = 0; n < 15; n++) await secrets.requestRead([item], asker(1));
  assert.equal(manager.list().length, 25);
  await assert.rejects(
    secrets.requestRead([item], asker(1)),
    (err: unknown) =>
      err instanceof RequestError && err.dbusName === Errors.LimitExceeded &&
      err.message.includes("this client"),
  );
  // Another client behind the same agent connection is still served.
  await secrets.requestRead([item], asker(50));
  assert.equal(manager.list().length, 26);
});

Deno.test("the daemon's own look at the client pid shows a report that does not match", async () => {
  const { secrets, manager, item, asker } = await setup();
  const id = await secrets.requestRead([item], asker(1, ["/usr/bin/firefox"]));
  const check = manager.get(id).secret!.clientCheck;
  assert.equal(check.consistent, false);
  assert.deepEqual(check.cmdline, ["secret-tool lookup k v"]);
  const gone = await secrets.requestRead([item], {
    ...asker(2),
    client: { ...client(2), pid: 12 },
  });
  assert.equal(manager.get(gone).secret!.clientCheck.uid, null);
});

Deno.test("metadata answers without a request and is logged", async () => {
  const { secrets, manager, item, asker, log } = await setup();
  const found = await secrets.searchItems({ service: "mail" }, {
    collection: null,
    asker: asker(),
  });
  assert.deepEqual(found.map((i) => i.path), [item]);
  assert.deepEqual(
    (await secrets.searchItems({}, {
      collection: "/org/freedesktop/secrets/aliases/default",
      asker: asker(),
    })).map((i) => i.path),
    [item],
  );
  assert.equal(await secrets.readAlias("default", asker()), MEMORY_LOGIN);
  assert.equal((await secrets.collections(asker())).length >= 1, true);
  assert.deepEqual(manager.list(), []);
  assert.ok(log.some((l) => l.includes("searched") && l.includes("service")));
});

Deno.test("a long reported command line is cut and marked, not refused", () => {
  const long = "A".repeat(5000);
  const many = Array.from({ length: 300 }, (_, i) => `arg${i}`);
  const r = parseClientReport(JSON.stringify({ busName: ":1.2", cmdline: ["java", long] }));
  assert.equal(r.cmdlineCut, true);
  assert.equal(r.cmdline![1].startsWith("A".repeat(4096) + "… (904 more characters)"), true);
  const m = parseClientReport(JSON.stringify({ busName: ":1.2", cmdline: many }));
  assert.equal(m.cmdline!.length, 257);
  assert.equal(m.cmdline!.at(-1), "… (44 more arguments)");
  assert.equal(
    parseClientReport(JSON.stringify({ busName: ":1.2", cmdline: ["x"] })).cmdlineCut,
    undefined,
  );
});

Deno.test("the report is compared with ps the way ps shows it (control bytes as ?)", () => {
  assert.equal(
    psArgs(["secret-tool", "store", "--label=a\u001b[2Jb"]),
    "secret-tool store --label=a?[2Jb",
  );
  assert.equal(psArgs(["x", "\u202e"]), "x ???");
  assert.equal(psArgs(["plain", "args"]), "plain args");
});

Deno.test("a flood is refused before the store is asked", async () => {
  const { secrets, item, asker, backend } = await setup();
  for (let n = 0; n < 16; n++) await secrets.requestRead([item], asker(3));
  let asked = 0;
  const getItems = backend.getItems.bind(backend);
  backend.getItems = (p) => {
    asked++;
    return getItems(p);
  };
  await refused(secrets.requestRead([item], asker(3)), Errors.LimitExceeded);
  assert.equal(asked, 0);
});
