/**
 * tcpgadget copies itself into the agent pods: the compiled binary if it
 * is one, otherwise the Deno executable plus a one-file bundle of the
 * program (what those are, and the command that runs them:
 * core/self_program.ts). Each file is packed with gzip here (the agent
 * image has gzip: about 101.7 MB become 44 MB), streamed through the exec API (never held
 * in memory), unpacked in the pod into a temporary file of its attempt,
 * and kept only once its size and SHA-256 are checked there against the
 * digests computed here: large exec transfers can be cut short without an
 * error. (Agents then copy it to each other: payload_distribution.ts.)
 *
 * @module
 */

import { createHash } from "node:crypto";
import { TcpgadgetError } from "../../core/errors.ts";
import { gzipFile } from "../../core/gzip_file.ts";
import {
  bundleProgram,
  isCompiledBinary,
  PROGRAM_FILES,
  programCommand,
} from "../../core/self_program.ts";
import { AGENT_DIR } from "./agent_pod.ts";
import { makeBundleDir } from "./bundle_dir.ts";
import { COPY_EXIT, type ReceivedFile, unpackCommand } from "./copy_scripts.ts";
import { execInPod, type ExecTarget } from "./exec.ts";

/** A file to copy into the pod. */
export interface PayloadFile {
  /** Name in the pod's agent directory. */
  name: string;
  /** Path here. */
  path: string;
  size: number;
  sha256: string;
  /** Its gzip, here: what the client sends. */
  packed: { path: string; size: number };
}

/** What to copy, and how to start node mode from it in the pod. */
export interface Payload {
  files: PayloadFile[];
  /** The command line that runs `tcpgadget <args>` in the pod. */
  command(args: string[]): string[];
  /** Removes local temporary files (the bundle, the packed files). */
  dispose(): Promise<void>;
}

/** SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  // Reading the stream to its end closes the file.
  const file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

async function describe(
  name: string,
  path: string,
  dir: string,
  signal?: AbortSignal,
): Promise<PayloadFile> {
  const packed = `${dir}/${name}.gz`;
  const [{ size }, sha256, packedSize] = await Promise.all([
    Deno.stat(path),
    sha256File(path),
    gzipFile(path, packed, { signal }),
  ]);
  return { name, path, size, sha256, packed: { path: packed, size: packedSize } };
}

// Still offered here: the upload's callers ask it.
export { isCompiledBinary };

/**
 * The payload for this process: the binary itself, or (under `deno run`)
 * the Deno executable and a bundle made with `deno bundle` from `main`;
 * each packed (gzip) in a temporary directory.
 */
export async function preparePayload(main: URL, signal?: AbortSignal): Promise<Payload> {
  const { path: dir, dispose: remove } = await makeBundleDir();
  const interrupted = () => {
    if (signal?.aborted) throw new TcpgadgetError("interrupted");
  };
  try {
    const compiled = isCompiledBinary();
    const command = (args: string[]) => programCommand(compiled, AGENT_DIR, args);
    if (compiled) {
      const binary = await describe(PROGRAM_FILES.binary, Deno.execPath(), dir, signal);
      interrupted();
      return { files: [binary], command, dispose: remove };
    }
    // The executable is packed while the bundle is made (another process).
    const deno = describe(PROGRAM_FILES.deno, Deno.execPath(), dir, signal);
    deno.catch(() => {});
    const bundle = `${dir}/${PROGRAM_FILES.bundle}`;
    await bundleProgram(main, bundle, signal);
    const files = [await deno, await describe(PROGRAM_FILES.bundle, bundle, dir, signal)];
    interrupted();
    return { files, command, dispose: remove };
  } catch (error) {
    await remove();
    if (signal?.aborted) throw new TcpgadgetError("interrupted");
    throw error;
  }
}

/** The copy in the pod does not match the original: cut short, or changed. */
export class DamagedCopyError extends TcpgadgetError {
  constructor(message: string) {
    super(message);
    this.name = "DamagedCopyError";
  }
}

/** A new attempt's id: each attempt writes files of its own (see copy_scripts.ts). */
export function newAttempt(): string {
  return [...crypto.getRandomValues(new Uint8Array(4))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Where `file` is written by attempt `attempt` in the pod, and what it must be. */
export function receivedFile(file: PayloadFile, attempt: string): ReceivedFile {
  const final = `${AGENT_DIR}/${file.name}`;
  return { size: file.size, sha256: file.sha256, part: `${final}.${attempt}.part`, final };
}

/** Reads a file in 1 MiB chunks, saying how many bytes were read so far. */
async function* counted(path: string, onBytes: (bytes: number) => void) {
  const file = await Deno.open(path);
  try {
    let bytes = 0;
    for (;;) {
      const chunk = new Uint8Array(1 << 20);
      const n = await file.read(chunk);
      if (n === null) return;
      yield chunk.subarray(0, n);
      // Read ahead of the socket by at most exec.ts's bound (1 MiB).
      onBytes(bytes += n);
    }
  } finally {
    file.close();
  }
}

/**
 * Streams `files`' packed (gzip) copies into the pod, each unpacked there
 * by attempt `attempt` and kept only once its size and SHA-256 are the
 * file's. `onProgress` gets the packed bytes sent so far. Throws
 * {@link DamagedCopyError} if a copy arrived cut short or damaged (calling
 * again sends it again), ExecDroppedError if the stream dropped.
 */
export async function uploadFiles(
  target: ExecTarget,
  files: PayloadFile[],
  attempt: string,
  options: {
    onProgress?: (packedBytes: number) => void;
    /** A file is in the pod, checked. */
    onFile?: (file: PayloadFile) => void;
    signal?: AbortSignal;
  } = {},
): Promise<void> {
  let before = 0;
  for (const file of files) {
    let stderr = "";
    const { exitCode } = await execInPod(
      target,
      unpackCommand(file.packed.size, receivedFile(file, attempt)),
      {
        stdin: counted(file.packed.path, (bytes) => options.onProgress?.(before + bytes)),
        onStderr: (chunk) => stderr += new TextDecoder().decode(chunk),
        signal: options.signal,
      },
    );
    if (options.signal?.aborted) return;
    const why = stderr.trim().split("\n").at(-1) ?? "";
    if (exitCode === COPY_EXIT.cutShort || exitCode === COPY_EXIT.damaged) {
      throw new DamagedCopyError(
        `copy of ${file.name} into pod ${target.namespace}/${target.pod} is damaged: ${why}`,
      );
    }
    if (exitCode !== 0) {
      throw new TcpgadgetError(
        `copying ${file.name} into pod ${target.namespace}/${target.pod} failed (exit ${exitCode}): ${why}${
          exitCode === COPY_EXIT.missingProgram ? " (the agent image lacks it: --image)" : ""
        }`,
      );
    }
    options.onFile?.(file);
    before += file.packed.size;
  }
}
