/**
 * The demo's directory (`.demo/` or `$SD_DEMO_DIR`): each start empties it, so the demo only takes
 * a directory that is new, empty or made by an earlier demo, and holds a lock on it while it
 * runs, taken before anything is deleted (a second demo in the same directory is refused).
 *
 * @module
 */

/**
 * The marker of a demo directory, in it: the demo creates it, holds an exclusive lock on it
 * (`flock`, released when the demo's process ends, however it ends) while it runs, and writes
 * its pid into it.
 */
export const DEMO_MARKER = "demo.lock";

/** Shell-quotes one word (for the demo's `env` file). */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Whether `dir` was made by a demo from before {@link DEMO_MARKER}: its `env` file exports
 * `SD_DEMO_DIR` as this very directory, as the demo writes it.
 */
async function isEarlierDemoDir(dir: string): Promise<boolean> {
  try {
    const env = await Deno.readTextFile(`${dir}/env`);
    const line = `export SD_DEMO_DIR=${shellQuote(await Deno.realPath(dir))}`;
    return env.split("\n").includes(line);
  } catch {
    return false;
  }
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/**
 * Takes `dir` for a demo: creates it when missing; refuses a non-empty directory that is not a
 * demo's (no {@link DEMO_MARKER}, nor an `env` an earlier demo wrote there) and one whose
 * marker another demo holds locked; then, holding the lock, deletes everything in it but the
 * marker and makes it 0700.
 *
 * @returns the locked marker: keep it open while the demo runs (closing it ends the lock)
 * @throws {Error} saying why the directory is refused; nothing in it is deleted then
 */
export async function claimDemoDir(dir: string): Promise<Deno.FsFile> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) throw new Error(`${dir} is not a directory`);
    throw err;
  }
  const before = await entries(dir);
  if (
    before.length > 0 && !before.includes(DEMO_MARKER) && !(await isEarlierDemoDir(dir))
  ) {
    throw new Error(
      `${dir} is not empty and is not a demo directory (no ${DEMO_MARKER}): a demo deletes ` +
        `everything in its directory, so it takes only a new or empty one, or one a demo made; ` +
        `set SD_DEMO_DIR to another directory`,
    );
  }
  const marker = `${dir}/${DEMO_MARKER}`;
  const existing = await Deno.lstat(marker).catch(() => null);
  if (existing !== null && !existing.isFile) {
    // A symlink here would have the demo truncate and write whatever it points to.
    throw new Error(`${marker} is not a plain file: remove it, or use another SD_DEMO_DIR`);
  }
  const lock = await Deno.open(marker, { read: true, write: true, create: true, mode: 0o600 });
  try {
    if (!(await lock.tryLock(true))) {
      const pid = (await Deno.readTextFile(marker).catch(() => "")).trim();
      throw new Error(
        `a demo${/^\d+$/.test(pid) ? ` (pid ${pid})` : ""} is already running in ${dir}; ` +
          `stop it first`,
      );
    }
    await lock.truncate(0);
    await lock.write(new TextEncoder().encode(`${Deno.pid}\n`));
    for (const name of await entries(dir)) {
      if (name !== DEMO_MARKER) await Deno.remove(`${dir}/${name}`, { recursive: true });
    }
    // The demo's keys, sockets and phrase live here: ours alone, as a fresh mkdir would make it.
    await Deno.chmod(dir, 0o700);
    return lock;
  } catch (err) {
    lock.close();
    throw err;
  }
}
