import assert from "node:assert/strict";
import type { ClientReport } from "../lib/protocol.ts";
import { CachedPort } from "./cached_port.ts";
import { FakePort } from "./test_support.ts";

const CLIENT: ClientReport = {
  busName: ":1.5",
  pid: 1,
  uid: 1000,
  exe: "/usr/bin/x",
  cmdline: ["x"],
  cwd: "/",
};

function setup() {
  const fake = new FakePort();
  let t = 0;
  const port = new CachedPort(fake, { ttlMs: 2000, now: () => t });
  const count = (member: string) => fake.calls.filter((c) => c.member === member).length;
  return { fake, port, count, advance: (ms: number) => t += ms };
}

Deno.test("item metadata is asked for once within the TTL, and again after it", async () => {
  const { fake, port, count, advance } = setup();
  const path = fake.addItem("Mail", { service: "mail" }, "v");
  assert.equal((await port.getItems([path], CLIENT))[0].label, "Mail");
  assert.equal((await port.getItems([path], CLIENT))[0].label, "Mail");
  assert.equal(count("GetItems"), 1);
  advance(2001);
  await port.getItems([path], CLIENT);
  assert.equal(count("GetItems"), 2);
});

Deno.test("searches always reach the daemon and refresh the items they return", async () => {
  const { fake, port, count } = setup();
  const path = fake.addItem("Mail", { service: "mail" }, "v");
  await port.searchItems({ service: "mail" }, { client: CLIENT });
  await port.searchItems({ service: "mail" }, { client: CLIENT });
  assert.equal(count("SearchItems"), 2);
  assert.equal((await port.getItems([path], CLIENT)).length, 1);
  assert.equal(count("GetItems"), 0, "served from what the search returned");
});

Deno.test("a write empties the cache when raised and when it ends", async () => {
  const { fake, port, count } = setup();
  const path = fake.addItem("Old", { service: "mail" }, "v");
  await port.getItems([path], CLIENT);
  await port.collections(CLIENT);
  const req = await port.requestSetProperties(path, { label: "New", client: CLIENT });
  await port.getItems([path], CLIENT);
  assert.equal(count("GetItems"), 2, "asked again after the write was raised");
  fake.requests.at(-1)!.approve();
  await req.completed;
  assert.equal((await port.getItems([path], CLIENT))[0].label, "New");
  assert.equal(count("GetItems"), 3, "asked again after the write ended");
  await port.collections(CLIENT);
  assert.equal(count("Collections"), 2);
});

Deno.test("a missing item is remembered as missing only for the TTL", async () => {
  const { fake, port, advance } = setup();
  const gone = "/org/freedesktop/secrets/collection/login/77";
  assert.deepEqual(await port.getItems([gone], CLIENT), []);
  fake.addItem("Later", {}, "v");
  advance(2001);
  assert.deepEqual(await port.getItems([gone], CLIENT), []);
  const later = [...fake.items.keys()].at(-1)!;
  assert.equal((await port.getItems([later], CLIENT)).length, 1);
});
