import assert from "node:assert/strict";
import { Screen, type TerminalIo } from "./terminal.ts";

function fakeIo() {
  const out: string[] = [];
  const raw: boolean[] = [];
  const dec = new TextDecoder();
  const io: TerminalIo = {
    write: (b) => out.push(dec.decode(b)),
    setRaw: (on) => raw.push(on),
    size: () => ({ cols: 10, rows: 2 }),
  };
  return { io, out, raw };
}

Deno.test("Screen: enter, draw only changed rows, restore once", () => {
  const { io, out, raw } = fakeIo();
  const s = new Screen(io);
  s.draw(["ignored"]);
  assert.equal(out.length, 0);
  s.enter();
  assert.equal(raw.join(), "true");
  assert.ok(out[0].includes("\x1b[?1049h") && out[0].includes("\x1b[?25l"));
  s.draw(["row one", "row two"]);
  assert.ok(
    out[1].includes("\x1b[1;1H\x1b[0m\x1b[2Krow one") &&
      out[1].includes("\x1b[2;1H\x1b[0m\x1b[2Krow two"),
  );
  s.draw(["row one", "row 2"]);
  assert.ok(!out[2].includes("row one") && out[2].includes("\x1b[2;1H\x1b[0m\x1b[2Krow 2"));
  s.draw(["row one", "row 2"]);
  assert.equal(out.length, 3);
  s.restore();
  s.restore();
  assert.deepEqual(raw, [true, false]);
  assert.ok(
    out[3].includes("\x1b[?1049l") && out[3].includes("\x1b[?25h") && out[3].includes("\x1b[?7h"),
  );
  assert.equal(out.length, 4);
});

Deno.test("Screen: a full-width row keeps its last character on a real terminal emulator", async () => {
  const xterm = (await import("@xterm/headless")).default;
  const cols = 20;
  const term = new xterm.Terminal({ cols, rows: 2, allowProposedApi: true });
  let pending = Promise.resolve();
  const s = new Screen({
    write: (b) => {
      pending = pending.then(() => new Promise<void>((r) => term.write(b, r)));
    },
    setRaw: () => {},
    size: () => ({ cols, rows: 2 }),
  });
  s.enter();
  const full = "abcdefghijklmnopqrs/";
  s.draw([full, "short"]);
  s.draw([full, "shorter still"]);
  await pending;
  const row = (i: number) => term.buffer.active.getLine(i)!.translateToString(true);
  assert.equal(row(0), full, "the 20th column is still there");
  assert.equal(row(1), "shorter still");
  s.draw([full, "x"]);
  await pending;
  assert.equal(row(1), "x", "a shorter row leaves nothing of the longer one behind");
});
