import assert from "node:assert/strict";
import { outcomeLine } from "./main.ts";

Deno.test("outcomeLine does not repeat an outcome the daemon's message starts with", () => {
  const line = (outcome: "denied" | "expired" | "cancelled", message: string) =>
    outcomeLine("1a2b3c4d", { outcome, message });
  assert.equal(line("denied", "denied: not mine"), "request 1a2b3c4d denied: not mine");
  assert.equal(line("denied", "denied by rule 42"), "request 1a2b3c4d denied by rule 42");
  assert.equal(line("denied", "denied on the console"), "request 1a2b3c4d denied on the console");
  assert.equal(line("denied", ""), "request 1a2b3c4d denied");
  assert.equal(
    line("expired", "the request expired unanswered"),
    "request 1a2b3c4d expired: the request expired unanswered",
  );
  assert.equal(line("denied", "deniedness"), "request 1a2b3c4d denied: deniedness");
});
