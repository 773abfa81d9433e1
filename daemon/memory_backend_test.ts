import assert from "node:assert/strict";
import { MEMORY_LOGIN, MEMORY_SESSION, MemoryBackend } from "./memory_backend.ts";
import { NoSuchObjectError, StoreLockedError, StoreUnavailableError } from "./backend.ts";

const text = (s: string) => ({ value: new TextEncoder().encode(s), contentType: "text/plain" });

Deno.test("MemoryBackend: store, replace, search, change and delete", async () => {
  let now = 1000;
  const b = new MemoryBackend({ now: () => now });
  assert.equal(await b.readAlias("default"), MEMORY_LOGIN);
  assert.equal(await b.readAlias("session"), MEMORY_SESSION);
  assert.equal(await b.readAlias("nope"), null);
  assert.deepEqual((await b.collections()).map((c) => c.path), [MEMORY_LOGIN, MEMORY_SESSION]);
  assert.equal((await b.status()).state, "unlocked");

  const a = await b.createItem(MEMORY_LOGIN, {
    label: "A",
    attributes: { service: "s", user: "u" },
    secret: text("one"),
    replace: false,
  });
  assert.equal(a, `${MEMORY_LOGIN}/1`);
  now = 2000;
  const same = await b.createItem(MEMORY_LOGIN, {
    label: "A2",
    attributes: { service: "s", user: "u" },
    secret: text("two"),
    replace: true,
  });
  assert.equal(same, a);
  const dup = await b.createItem(MEMORY_LOGIN, {
    label: "B",
    attributes: { service: "s" },
    secret: text("three"),
    replace: false,
  });
  assert.equal(dup, `${MEMORY_LOGIN}/2`);
  const s1 = await b.createItem(MEMORY_SESSION, {
    label: "S",
    attributes: {},
    secret: text("four"),
    replace: false,
  });
  assert.equal(s1, `${MEMORY_SESSION}/1`);

  const got = await b.getSecrets([a]);
  assert.equal(new TextDecoder().decode(got.get(a)!.value), "two");
  got.get(a)!.value[0] = 0; // copies out: the stored value is untouched
  assert.equal(new TextDecoder().decode((await b.getSecrets([a])).get(a)!.value), "two");
  const [meta] = await b.getItems([a]);
  assert.deepEqual(meta, {
    path: a,
    collection: MEMORY_LOGIN,
    label: "A2",
    attributes: { service: "s", user: "u" },
    created: 1000,
    modified: 2000,
  });

  assert.deepEqual((await b.searchItems({ service: "s" }, null)).map((i) => i.path), [a, dup]);
  assert.deepEqual((await b.searchItems({ user: "u" }, MEMORY_LOGIN)).map((i) => i.path), [a]);
  assert.deepEqual((await b.searchItems({}, null)).map((i) => i.path), [a, dup, s1]);
  assert.deepEqual(await b.searchItems({ service: "other" }, null), []);
  await assert.rejects(b.searchItems({}, `${MEMORY_LOGIN}x`), NoSuchObjectError);

  await b.setSecret(dup, text("five"));
  await b.setProperties(dup, { label: "B2", attributes: { k: "v" } });
  assert.equal(new TextDecoder().decode((await b.getSecrets([dup])).get(dup)!.value), "five");
  assert.deepEqual((await b.searchItems({ k: "v" }, null)).map((i) => i.label), ["B2"]);

  await b.deleteItem(dup);
  assert.deepEqual(await b.getItems([dup, a]).then((l) => l.map((i) => i.path)), [a]);
  await assert.rejects(b.getSecrets([dup]), NoSuchObjectError);
  await assert.rejects(b.deleteItem(dup), NoSuchObjectError);
  await assert.rejects(b.setSecret(dup, text("x")), NoSuchObjectError);
  // Ids keep counting up after a delete.
  const next = await b.createItem(MEMORY_LOGIN, {
    label: "C",
    attributes: {},
    secret: text("six"),
    replace: false,
  });
  assert.equal(next, `${MEMORY_LOGIN}/3`);
});

Deno.test("MemoryBackend: locked and unavailable states", async () => {
  const b = new MemoryBackend();
  const item = await b.createItem(MEMORY_LOGIN, {
    label: "A",
    attributes: { a: "1" },
    secret: text("v"),
    replace: false,
  });
  b.lock();
  const status = await b.status();
  assert.equal(status.state, "locked");
  assert.match(status.message, /must be unlocked/);
  await assert.rejects(b.getSecrets([item]), StoreLockedError);
  await assert.rejects(b.setSecret(item, text("w")), StoreLockedError);
  await assert.rejects(b.setProperties(item, { label: "B" }), StoreLockedError);
  await assert.rejects(b.deleteItem(item), StoreLockedError);
  await assert.rejects(
    b.createItem(MEMORY_LOGIN, { label: "x", attributes: {}, secret: text("x"), replace: false }),
    StoreLockedError,
  );
  // Metadata stays readable, and other collections usable.
  assert.deepEqual((await b.searchItems({ a: "1" }, null)).map((i) => i.path), [item]);
  await b.createItem(MEMORY_SESSION, {
    label: "x",
    attributes: {},
    secret: text("x"),
    replace: false,
  });
  b.unlock();
  assert.equal((await b.getSecrets([item])).size, 1);

  b.setUnavailable(true);
  assert.equal((await b.status()).state, "unavailable");
  await assert.rejects(b.getSecrets([item]), StoreUnavailableError);
  await assert.rejects(b.searchItems({}, null), StoreUnavailableError);
  await assert.rejects(b.readAlias("default"), StoreUnavailableError);
  b.setUnavailable(false);
  assert.equal(await b.readAlias("default"), MEMORY_LOGIN);
});
