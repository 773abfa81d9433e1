/**
 * The per-install console phrase: a few random words, created once (at provisioning, or by the
 * demo), kept in a file that only the companion user can read, and shown on every screen of the
 * console. A fake "approval" screen drawn by a compromised desktop session cannot show it, so the
 * user can tell the real console from an imitation (`../shared/reference/vt-pam-systemd-vm.md`
 * §1, threat table).
 *
 * The phrase is not a password: it is never typed, only recognised. Four words from
 * {@link WORDS} (256 of them) give 2^32 possibilities, far beyond guessing at one attempt.
 *
 * @module
 */

/** Environment variable naming the phrase file. */
export const PHRASE_ENV = "SD_CONSOLE_PHRASE_FILE";
/** Longest phrase shown, in UTF-16 code units; a longer file is cut and flagged. */
export const MAX_PHRASE = 80;

/** 256 short, distinct, easily read English words. */
export const WORDS: readonly string[] = (
  "acorn amber anchor apple arrow aspen atlas autumn badge bagel bamboo banjo barley basil " +
  "beacon beaver berry birch biscuit blanket bloom bonnet border bramble bridge brook bubble " +
  "bucket buffalo bugle butter cabin cactus camel candle canoe canyon carpet carrot castle cedar " +
  "cello chalk cherry chess chimney cider cinnamon circus clover cobalt cocoa comet compass " +
  "copper coral cotton cougar crane crayon cricket crystal cuckoo daisy dawn delta denim desert " +
  "dolphin donkey dragon drum dune eagle easel echo elbow ember emerald falcon feather fennel " +
  "fern ferry fiddle fig flannel flute fossil fox galaxy garden garlic gecko ginger glacier " +
  "glove goblet gopher granite grape gravel guitar hammock harbor harvest hazel heron hickory " +
  "honey hopper iris island ivory jacket jasmine jelly jigsaw juniper kayak kettle kiwi koala " +
  "ladder lagoon lantern lemon lentil lilac lily linen lobster locket lotus lumber magnet " +
  "mango maple marble meadow melon mitten monsoon moose mosaic muffin mustard nectar needle " +
  "nickel noodle nutmeg oak oasis olive onion orbit orchid otter oyster paddle pagoda panda " +
  "papaya parcel parrot peach pebble pepper piano pickle pigeon pillow pine plum pocket pollen " +
  "pony poppy pretzel prism puffin pumpkin quartz quill quiver rabbit radish raven reef ribbon " +
  "river robin rocket saddle saffron salmon sandal satchel scarf seagull sequoia shovel silver " +
  "sled slipper sparrow spruce squash squirrel staple starling summit sunset swan tamarind " +
  "teapot thimble thistle thunder tiger timber tomato topaz tortoise trellis trumpet tulip " +
  "tundra turnip umbrella valley velvet violet violin walnut walrus wasabi whistle willow " +
  "window wizard yarrow yogurt zebra zephyr zinnia acrobat badger cashew dahlia falafel " +
  "gazelle hamster igloo jackal"
).split(" ");

/**
 * A new phrase: four different words from {@link WORDS}, chosen with `crypto.getRandomValues`
 * (a repeated word is drawn again: "sled sled" reads like a typo and is easier to fake).
 *
 * @param random fills a byte array with random bytes (tests pass a fixed source)
 * @returns e.g. `"otter cobalt lantern pebble"`
 */
export function generatePhrase(
  random: (bytes: Uint8Array) => Uint8Array = (b) => crypto.getRandomValues(b),
): string {
  if (WORDS.length !== 256) throw new Error("the word list must have 256 words");
  const picked: string[] = [];
  while (picked.length < 4) {
    for (const b of random(new Uint8Array(4))) {
      if (picked.length < 4 && !picked.includes(WORDS[b])) picked.push(WORDS[b]);
    }
  }
  return picked.join(" ");
}

/** What the console knows about its phrase. */
export interface PhraseInfo {
  /** The phrase (raw, first line of the file, cut at {@link MAX_PHRASE}), or null. */
  phrase: string | null;
  /** Why there is no phrase, or what is wrong with the file (raw text), or null. */
  warning: string | null;
}

/** The file operations {@link readPhrase} needs (real: Deno; tests: a fake). */
export interface PhraseFs {
  readTextFile(path: string): string;
  /** `mode` of the file (`stat(2)` `st_mode`), or null when unknown. */
  mode(path: string): number | null;
}

const denoFs: PhraseFs = {
  readTextFile: (path) => Deno.readTextFileSync(path),
  mode: (path) => Deno.statSync(path).mode,
};

/**
 * Reads the phrase from `path` (normally `$SD_CONSOLE_PHRASE_FILE`). Never throws: a missing
 * variable or file, an empty file, or a file others may read come back as a warning to show.
 *
 * @param path the phrase file, or undefined when the variable is not set
 * @param fs file access (default: Deno, which needs `--allow-read=<path>`)
 */
export function readPhrase(path: string | undefined, fs: PhraseFs = denoFs): PhraseInfo {
  if (!path) {
    return {
      phrase: null,
      warning: `${PHRASE_ENV} is not set: no console phrase to show`,
    };
  }
  let text: string;
  try {
    text = fs.readTextFile(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? "no such file"
      : err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : err instanceof Error
      ? err.message
      : String(err);
    return { phrase: null, warning: `cannot read the console phrase from ${path}: ${why}` };
  }
  const first = text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  if (first === "") return { phrase: null, warning: `the console phrase file ${path} is empty` };
  const phrase = first.length > MAX_PHRASE ? first.slice(0, MAX_PHRASE) : first;
  const warnings: string[] = [];
  if (phrase !== first) warnings.push(`phrase cut at ${MAX_PHRASE} characters`);
  let mode: number | null = null;
  try {
    mode = fs.mode(path);
  } catch {
    mode = null;
  }
  if (mode !== null && (mode & 0o077) !== 0) {
    warnings.push(
      `${path} is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`,
    );
  }
  return { phrase, warning: warnings.length ? warnings.join("; ") : null };
}
