/**
 * The context the signer reports with a signing request: repository, branch, rebase progress and
 * the files changed between the payload's tree and its first parent, read from the object
 * database (never the index, which is wrong while git signs; git-gpg-program.md §3.5).
 *
 * Everything here is a claim of the desktop user's account and is shown as "reported".
 *
 * @module
 */

import { GitObjectStore } from "../lib/git_objects.ts";
import type { SignContent, SignContext } from "../lib/protocol.ts";

/** Where the repository is, as the front script found it with `git rev-parse`. */
export interface RepoLocation {
  /** `--absolute-git-dir`. */
  gitDir: string;
  /** `--git-common-dir`, absolute (differs from gitDir in linked worktrees). */
  commonDir: string;
  /** The work tree (git runs gpg.program at its top), or the git dir of a bare repo. */
  workTree: string;
}

/** Most changed files sent with one request. */
export const MAX_FILES = 1000;

/**
 * Collects the reported context for a parsed payload. Never throws: what cannot be read is
 * left out, with `filesError` saying why.
 */
export async function collectContext(
  repo: RepoLocation,
  content: SignContent | null,
): Promise<SignContext> {
  const ctx: SignContext = { repo: repo.workTree };
  ctx.branch = await readBranch(repo.gitDir);
  const rebase = await readRebase(repo.gitDir);
  if (rebase) ctx.rebase = rebase;
  if (content?.type === "commit") {
    try {
      const store = await GitObjectStore.open(repo.gitDir);
      const { files, truncated } = await store.changedFiles(
        content.tree,
        content.parents[0] ?? null,
        { limit: MAX_FILES },
      );
      ctx.files = files;
      if (truncated) ctx.filesTruncated = true;
    } catch (err) {
      ctx.filesError = err instanceof Error ? err.message : String(err);
    }
  }
  return ctx;
}

async function readText(path: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return null;
  }
}

async function readBranch(gitDir: string): Promise<string | undefined> {
  const head = await readText(`${gitDir}/HEAD`);
  if (head === null) return undefined;
  if (head.startsWith("ref: ")) return head.slice(5).replace(/^refs\/heads\//, "");
  const rebaseHead = await readText(`${gitDir}/rebase-merge/head-name`) ??
    await readText(`${gitDir}/rebase-apply/head-name`);
  if (rebaseHead) return `${rebaseHead.replace(/^refs\/heads\//, "")} (rebasing, detached HEAD)`;
  return "(detached HEAD)";
}

async function readRebase(gitDir: string): Promise<string | null> {
  for (const dir of ["rebase-merge", "rebase-apply"]) {
    const msgnum = await readText(`${gitDir}/${dir}/msgnum`) ??
      await readText(`${gitDir}/${dir}/next`);
    const end = await readText(`${gitDir}/${dir}/end`) ?? await readText(`${gitDir}/${dir}/last`);
    if (msgnum && end) {
      const onto = await readText(`${gitDir}/${dir}/onto`);
      return `${msgnum}/${end}${onto ? ` onto ${onto.slice(0, 12)}` : ""}`;
    }
  }
  return null;
}
