import assert from "node:assert/strict";
import { deployment } from "./layout.ts";
import { MANAGE_UNITS_ACTION, polkitRule } from "./polkit.ts";

type Rule = (
  action: { id: string; lookup(k: string): string | undefined },
  subject: { user: string },
) => string;

/** Runs the rule text the way polkitd does: it calls polkit.addRule with a function. */
function load(text: string): Rule {
  let rule: Rule | null = null;
  const polkit = {
    Result: { YES: "yes", NO: "no", NOT_HANDLED: "not-handled" },
    addRule(fn: Rule) {
      rule = fn;
    },
  };
  new Function("polkit", text)(polkit);
  assert.ok(rule, "the file adds a rule");
  return rule;
}

Deno.test("polkit rule: the companion may stop its target, the user may start it, nothing else", () => {
  const d = deployment({
    user: "alice",
    uid: 1000,
    home: "/home/alice",
    vt: 8,
    backend: { kind: "gnome-keyring", argv: ["/usr/bin/gnome-keyring-daemon"] },
  });
  const rule = load(polkitRule(d));
  const ask = (user: string, verb: string, unit = d.units.companion, id = MANAGE_UNITS_ACTION) =>
    rule({ id, lookup: (k) => ({ unit, verb } as Record<string, string>)[k] }, { user });
  assert.equal(ask("secrets-alice", "stop"), "yes");
  assert.equal(ask("alice", "start"), "yes");
  assert.equal(ask("alice", "stop"), "not-handled");
  assert.equal(ask("secrets-alice", "start"), "not-handled");
  assert.equal(ask("secrets-alice", "restart"), "not-handled");
  assert.equal(ask("bob", "start"), "not-handled");
  assert.equal(ask("secrets-alice", "stop", "dbus.service"), "not-handled");
  assert.equal(ask("secrets-alice", "stop", d.units.daemon), "not-handled");
  assert.equal(
    ask("secrets-alice", "stop", d.units.companion, "org.freedesktop.login1.power-off"),
    "not-handled",
  );
  // ES5 for duktape: no arrow functions, let/const or template strings in the rule body.
  assert.doesNotMatch(polkitRule(d), /=>|\blet\b|\bconst\b|`/);
});
