/**
 * `tcpgadget image build`: writes the agent image of the running
 * tcpgadget (k8s/image/agent_image.ts) as an OCI archive, for the user to
 * push to a registry of theirs. The program's files are gathered in a
 * temporary directory (the bundle, the layer), removed on every way out
 * and swept by a later run if this one is killed; the archive is written
 * under a temporary name next to the output and takes its name only when
 * complete. Ctrl-C, SIGTERM and SIGHUP stop it within a 1 MiB chunk.
 *
 * @module
 */

import { TcpgadgetError } from "../core/errors.ts";
import { selfProgram } from "../core/self_program.ts";
import { printWarning } from "../core/warning.ts";
import { type BundleDir, makeBundleDir } from "../k8s/api/bundle_dir.ts";
import { writeAgentImage } from "../k8s/image/agent_image.ts";
import { parseImageReference } from "../k8s/image/image_reference.ts";
import { OciArchiveFile } from "../k8s/image/oci_archive.ts";
import type { ImageBuildFlags } from "./flags.ts";
import { StopControl } from "./stop_control.ts";
import { VERSION } from "./version.ts";

/** Exit status of a build stopped by a signal: 128 + its number, as a shell reports it. */
const SIGNAL_STATUS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 129,
  SIGINT: 130,
  SIGTERM: 143,
};

/**
 * Builds the image of this program (whose entry point is `main`) into
 * `flags.output`. Returns the exit status; says on stderr what it wrote and
 * how to push it.
 */
export async function imageBuild(
  flags: ImageBuildFlags,
  options: { main: URL; warn?: (message: string) => void },
): Promise<number> {
  const warn = options.warn ?? printWarning;
  const reference = parseImageReference(flags.tag ?? `tcpgadget:${VERSION}`);
  const started = performance.now();
  using stop = new StopControl();
  // First: a directory that is missing or not writable is said at once.
  const archive = await OciArchiveFile.create(flags.output);
  let work: BundleDir | undefined;
  try {
    work = await makeBundleDir();
    const program = await selfProgram(options.main, work.path, stop.signal);
    const image = await writeAgentImage(archive, {
      program,
      version: VERSION,
      reference,
      workDir: work.path,
      idleEntry: new URL("./agent_idle.ts", import.meta.url),
      signal: stop.signal,
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    warn(
      `wrote ${flags.output} (${
        megabytes(image.size)
      }) in ${seconds} s: image ${reference.familiar} ` +
        `(${program.compiled ? "the compiled binary" : "Deno and a bundle"}), ` +
        `manifest ${image.manifestDigest}`,
    );
    const destination = reference.registry === undefined
      ? `REGISTRY/${reference.familiar}`
      : reference.familiar;
    warn(
      `push it with: skopeo copy ${
        shellWord(`oci-archive:${flags.output}`)
      } docker://${destination}`,
    );
    return 0;
  } catch (error) {
    if (stop.stopped) {
      throw new TcpgadgetError("interrupted: no image written", {
        exitCode: SIGNAL_STATUS[stop.signalName ?? "SIGINT"] ?? 130,
      });
    }
    throw error;
  } finally {
    await archive.discard();
    await work?.dispose();
  }
}

/**
 * `word` as one shell word, for a command the user copies (a path with
 * spaces or quotes stays one argument).
 *
 * @example
 * ```ts
 * import { shellWord } from "./image_build.ts";
 * import assert from "node:assert/strict";
 * assert.equal(shellWord("oci-archive:out/tcpgadget.tar"), "oci-archive:out/tcpgadget.tar");
 * assert.equal(shellWord("oci-archive:my image's.tar"), "'oci-archive:my image'\\''s.tar'");
 * ```
 */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
