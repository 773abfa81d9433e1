/**
 * Proves that a `DENO_DIR` holds everything some modules need: imports each module given (an
 * absolute path) with `--cached-only`, which fails on the first npm package or remote module
 * that is not cached. Provisioning runs it as the companion user with the pinned Deno and a
 * read-only `DENO_DIR` (the `--check` item "DENO_DIR complete"). The modules' `main` functions
 * do not run (they are guarded by `import.meta.main`).
 *
 * Usage: `deno run --no-prompt --cached-only --frozen --config=<install>/deno.json
 * --allow-read=<install> <install>/provision/cache_probe.ts <module>...`
 *
 * Output: `ok` on stdout and exit 0, or Deno's error (naming what is missing) and exit 1.
 *
 * @module
 */

for (const path of Deno.args) await import(new URL(`file://${path}`).href);
console.log("ok");
