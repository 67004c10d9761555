/**
 * The client's temporary directory for the payload (the bundle and the
 * packed files: about 45 MB), and the sweep of those that a killed client
 * left. A client ended by SIGKILL (or the OOM killer, or a power cut) runs
 * no cleanup: the directory of each run carries an `owner` file locked
 * (flock) for the life of its process; the kernel drops the lock whatever
 * way the process ends, so a directory whose lock can be taken is
 * abandoned, and the next run removes it.
 *
 * @module
 */

import { basename, dirname } from "node:path";

/** The prefix of every payload directory. */
export const BUNDLE_DIR_PREFIX = "tcpgadget-bundle-";
const OWNER = "owner";
// Not hex: a directory of this name is being locked (swept only when old).
const STAGING_PREFIX = "tcpgadget-bundle-new-";
// The names Deno.makeTempDir gives (hex, leading zeros dropped); tests' own differ.
const BUNDLE_DIR = /^tcpgadget-bundle-(new-)?[0-9a-f]+$/;
// A directory without an owner file is older than the lock (from an earlier
// version), or its process is between making it and locking it: only the
// first kind is this old.
const UNLOCKED_AGE_MS = 10 * 60_000;

/** A payload directory of this process, removed by `dispose`. */
export interface BundleDir {
  path: string;
  dispose(): Promise<void>;
}

/**
 * Makes this run's payload directory (removed at exit, however the process
 * exits short of SIGKILL), after removing those of processes that are gone.
 *
 * @example
 * ```ts
 * import { makeBundleDir, sweepAbandonedBundleDirs } from "./bundle_dir.ts";
 * import assert from "node:assert/strict";
 * const dir = await makeBundleDir();
 * // Held by this process: another sweep leaves it.
 * await sweepAbandonedBundleDirs(`${dir.path}/..`);
 * assert.ok(Deno.statSync(dir.path).isDirectory);
 * await dir.dispose();
 * assert.throws(() => Deno.statSync(dir.path), Deno.errors.NotFound);
 * ```
 */
export async function makeBundleDir(): Promise<BundleDir> {
  // Made under a name the sweep does not take for a payload directory, and
  // given its final name only once its owner file is locked: between
  // creating the file and locking it, another run's sweep would find it
  // unlocked and remove the directory (two runs started at once did).
  const staging = await Deno.makeTempDir({ prefix: STAGING_PREFIX });
  const owner = await Deno.open(`${staging}/${OWNER}`, { create: true, write: true });
  owner.lockSync(true);
  const path = `${dirname(staging)}/${BUNDLE_DIR_PREFIX}${
    basename(staging).slice(STAGING_PREFIX.length)
  }`;
  await Deno.rename(staging, path);
  await sweepAbandonedBundleDirs(dirname(path)).catch(() => {});
  let removed = false;
  const removeSync = () => {
    if (removed) return;
    removed = true;
    globalThis.removeEventListener("unload", removeSync);
    try {
      owner.close();
    } catch {
      // already closed
    }
    try {
      Deno.removeSync(path, { recursive: true });
    } catch {
      // already removed
    }
  };
  // However the process ends (Deno.exit after a second Ctrl-C included),
  // the directory does not stay behind.
  globalThis.addEventListener("unload", removeSync);
  return { path, dispose: () => Promise.resolve(removeSync()) };
}

/** Where payload directories are made (Deno.makeTempDir's directory). */
export function tempDir(): string {
  return Deno.env.get("TMPDIR") || "/tmp";
}

/** Removes the payload directories in `parent` whose process is gone. */
export async function sweepAbandonedBundleDirs(parent = tempDir()): Promise<void> {
  for await (const entry of Deno.readDir(parent)) {
    const match = entry.isDirectory && BUNDLE_DIR.exec(entry.name);
    if (!match) continue;
    const path = `${parent}/${entry.name}`;
    // A staging directory is being locked, unless it is old: its process
    // was killed in those microseconds.
    const staging = match[1] !== undefined;
    if (staging && !(await older(path, UNLOCKED_AGE_MS))) continue;
    if (await abandoned(path)) await Deno.remove(path, { recursive: true }).catch(() => {});
  }
}

async function older(path: string, ms: number): Promise<boolean> {
  const { mtime } = await Deno.stat(path).catch(() => ({ mtime: null }));
  return mtime !== null && Date.now() - mtime.getTime() > ms;
}

async function abandoned(path: string): Promise<boolean> {
  let owner: Deno.FsFile;
  try {
    owner = await Deno.open(`${path}/${OWNER}`, { write: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) return false;
    return await older(path, UNLOCKED_AGE_MS);
  }
  try {
    return owner.tryLockSync(true);
  } finally {
    owner.close();
  }
}
