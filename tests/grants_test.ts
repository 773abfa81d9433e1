/**
 * Grants, deny rules and the lock through the real path: git → signer → daemon, decided through
 * `ctl` (the real entrypoint with its production flags) on the companion bus. The rebase grant is
 * the strong case: the daemon predicts the id of the commit git writes from the signature it
 * returns, and the next `git commit -S` on top of it must be signed without asking.
 *
 * @module
 */

import assert from "node:assert/strict";
import { denoArgs } from "../deploy/permissions.ts";
import { denoDir, ROOT } from "../dev/harness.ts";
import { exec, type SignStack, signStack } from "./support.ts";

/** Runs the real `ctl` entrypoint against the stack's companion bus. */
async function ctl(s: SignStack, args: string[]) {
  const argv = denoArgs("ctl", {
    root: ROOT,
    paths: {
      systemBusSocket: s.systemBus.socket,
      companionBusSocket: s.companionBus.socket,
      stateDir: "",
      gpg: "",
      gitDirs: [],
    },
  });
  return await exec(Deno.execPath(), [...argv, ...args], {
    env: {
      SD_COMPANION_BUS_ADDRESS: s.companionBus.address,
      DENO_DIR: await denoDir(),
      PATH: "/usr/bin:/bin",
    },
  });
}

/** Starts `git commit -S --allow-empty -m <msg>`; resolves with its exit code and stderr. */
function commit(s: SignStack, repo: string, msg: string) {
  return exec("git", ["-C", repo, "commit", "-S", "-q", "--allow-empty", "-m", msg], {
    env: s.env,
  });
}

/** The id of the one pending request, waiting up to 10 s. */
async function pendingId(s: SignStack): Promise<string> {
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const [p] = await s.admin.list();
    if (p) return p.id;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("no request became pending");
}

Deno.test("rebase grant: the next N commits on top of the one signed need no approval", async () => {
  const s = await signStack();
  try {
    const repo = await s.repo();
    const first = commit(s, repo, "one");
    const id = await pendingId(s);
    const approve = await ctl(s, ["approve", id.slice(0, 8), "--grant-signatures", "2"]);
    assert.equal(approve.code, 0, approve.stderr);
    assert.match(approve.stdout, /^approved [0-9a-f]{8} \(sign\.commit\) "one"/);
    assert.match(approve.stdout, /\ngrant g[0-9a-f]{8} rebase-grant: the next 2 commit signature/);
    assert.equal((await first).code, 0);

    // Two more commits, each on top of the one just signed: signed without anyone approving.
    for (const msg of ["two", "three"]) {
      const r = await commit(s, repo, msg);
      assert.equal(r.code, 0, `${msg}: ${r.stderr}`);
    }
    const verify = await exec("git", ["-C", repo, "verify-commit", "HEAD"], { env: s.env });
    assert.equal(verify.code, 0, verify.stderr);
    const history = await s.admin.history(100);
    const byGrant = history.filter((e) => e.event === "approved" && e.rule);
    assert.equal(byGrant.length, 2, "two approvals by the grant, in the history");

    // The grant is used up: the fourth asks again (denied here, with a rule).
    const fourth = commit(s, repo, "four");
    const id4 = await pendingId(s);
    const deny = await ctl(s, ["deny", id4, "--rule", "--rule-minutes", "5"]);
    assert.equal(deny.code, 0, deny.stderr);
    assert.match(deny.stdout, /\nrule r[0-9a-f]{8} deny: deny sign\.commit from uid \d+, key /);
    assert.notEqual((await fourth).code, 0);
    // The deny rule: the next one is denied at once.
    const fifth = await commit(s, repo, "five");
    assert.notEqual(fifth.code, 0);
    assert.deepEqual(await s.admin.list(), []);
    const rules = await ctl(s, ["rules"]);
    assert.match(rules.stdout, /^r[0-9a-f]{8} deny: .*until .*used 1/m);
    const ruleId = /^(r[0-9a-f]{8})/m.exec(rules.stdout)![1];
    assert.equal((await ctl(s, ["revoke", ruleId])).code, 0);
    assert.equal((await ctl(s, ["rules"])).stdout, "no grants or deny rules\n");
  } finally {
    await s.close();
  }
});

Deno.test("lock: pending requests end, new ones are refused, unlock lets them through", async () => {
  const s = await signStack();
  try {
    const repo = await s.repo();
    const pending = commit(s, repo, "before the lock");
    await pendingId(s);
    assert.equal((await ctl(s, ["lock"])).code, 0);
    assert.notEqual((await pending).code, 0, "the pending request was denied by the lock");
    const status = await ctl(s, ["status"]);
    assert.match(status.stdout, /^store locked: locked on the console/);
    const refused = await commit(s, repo, "while locked");
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /gpg failed to sign/);
    assert.deepEqual(await s.admin.list(), [], "refused at once: nothing became pending");
    assert.equal((await ctl(s, ["unlock"])).code, 0);
    const after = commit(s, repo, "after the unlock");
    const id = await pendingId(s);
    assert.equal((await ctl(s, ["approve", id])).code, 0);
    assert.equal((await after).code, 0);
  } finally {
    await s.close();
  }
});
