/**
 * tcpgadget copies itself into each agent pod through the exec API: the
 * compiled binary if it is one, otherwise the Deno executable plus a
 * one-file bundle of the program. Files are streamed (never held in
 * memory), written under a temporary name, and checked for size and
 * SHA-256 in the pod before they are used: large exec transfers can be cut
 * short without an error.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { TcpgadgetError } from "../../core/errors.ts";
import { AGENT_DIR } from "./agent_pod.ts";
import { execInPod, type ExecTarget } from "./exec.ts";

/** A file to copy into the pod. */
export interface PayloadFile {
  /** Name in the pod's agent directory. */
  name: string;
  /** Path here. */
  path: string;
  size: number;
  sha256: string;
}

/** What to copy, and how to start node mode from it in the pod. */
export interface Payload {
  files: PayloadFile[];
  /** The command line that runs `tcpgadget <args>` in the pod. */
  command(args: string[]): string[];
  /** Removes local temporary files (the bundle). */
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

async function describe(name: string, path: string): Promise<PayloadFile> {
  const { size } = await Deno.stat(path);
  return { name, path, size, sha256: await sha256File(path) };
}

/** Whether this process is a `deno compile`d binary. */
export function isCompiledBinary(): boolean {
  // A compiled program's modules live in a virtual directory of this name.
  return Deno.mainModule.includes("/deno-compile-");
}

/**
 * The payload for this process: the binary itself, or (under `deno run`)
 * the Deno executable and a bundle made with `deno bundle` from `main`.
 */
export async function preparePayload(main: URL, signal?: AbortSignal): Promise<Payload> {
  if (isCompiledBinary()) {
    const binary = await describe("tcpgadget", Deno.execPath());
    return {
      files: [binary],
      command: (args) => [`${AGENT_DIR}/tcpgadget`, ...args],
      dispose: () => Promise.resolve(),
    };
  }
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-bundle-" });
  // However the process ends (Deno.exit after a second Ctrl-C included),
  // the bundle does not stay behind.
  const removeAtExit = () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // already removed
    }
  };
  globalThis.addEventListener("unload", removeAtExit);
  const remove = async () => {
    globalThis.removeEventListener("unload", removeAtExit);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const bundle = `${dir}/tcpgadget.js`;
    const result = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "deno", "--output", bundle, main.pathname],
      // Next to the program: its deno.json (imports, unstable features)
      // applies wherever the user runs it from.
      cwd: new URL(".", main).pathname,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal,
    }).output();
    if (signal?.aborted) throw new TcpgadgetError("interrupted");
    if (!result.success) {
      throw new TcpgadgetError(
        `cannot bundle tcpgadget for the agent pods: ${
          new TextDecoder().decode(result.stderr).trim()
            .split("\n")[0]
        }`,
      );
    }
    const files = [await describe("deno", Deno.execPath()), await describe("tcpgadget.js", bundle)];
    if (signal?.aborted) throw new TcpgadgetError("interrupted");
    return {
      files,
      command: (args) => [
        "env",
        `DENO_DIR=${AGENT_DIR}/.deno`,
        "DENO_NO_UPDATE_CHECK=1",
        `${AGENT_DIR}/deno`,
        "run",
        "--allow-all",
        // A smaller young generation: the agent's memory stays well under 100 MB.
        "--v8-flags=--max-semi-space-size=4",
        "--no-config",
        "--no-lock",
        `${AGENT_DIR}/tcpgadget.js`,
        ...args,
      ],
      dispose: remove,
    };
  } catch (error) {
    await remove();
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

/** Size and SHA-256 of files in the pod (undefined for a missing one), in one exec. */
async function remoteDigests(
  target: ExecTarget,
  paths: string[],
  signal?: AbortSignal,
): Promise<({ size: number; sha256: string } | undefined)[]> {
  let output = "";
  const script = 'for f in "$@"; do if test -f "$f"; then echo "$(stat -c %s "$f") ' +
    '$(sha256sum "$f")"; else echo missing; fi; done';
  const { exitCode } = await execInPod(target, ["sh", "-c", script, "sh", ...paths], {
    onStdout: (chunk) => output += new TextDecoder().decode(chunk),
    signal,
  });
  const lines = output.split("\n");
  return paths.map((_, i) => {
    const [size, sha256] = (lines[i] ?? "").split(/\s+/);
    return exitCode === 0 && size !== "missing" && sha256
      ? { size: Number(size), sha256 }
      : undefined;
  });
}

/** What an upload did, for the user. */
export interface UploadReport {
  bytes: number;
  milliseconds: number;
  /** Files already in the pod with the right digest (not sent again). */
  reused: number;
}

/**
 * The shell script that writes standard input to `path`: `head -c` stops
 * after exactly the file's bytes, so the copy ends even over protocol v4,
 * which cannot signal the end of standard input. Each attempt writes a
 * temporary file of its own, and renames it only once it has every byte:
 * the commands of an attempt cut short run on in the pod (containerd keeps
 * exec'd processes when their client goes) until their input ends, maybe
 * after a retry; with one shared name, such a late `mv` moved the retry's
 * file away while it was written (and its `head`, still writing, kept the
 * final file busy: "Text file busy" when run).
 *
 * @example
 * ```ts
 * import { copyScript } from "./self_copy.ts";
 * import assert from "node:assert/strict";
 * const script = copyScript("/tmp/tcpgadget/deno", 5, "a1b2c3");
 * assert.match(script, /head -c 5 > '\/tmp\/tcpgadget\/deno\.a1b2c3\.part'/);
 * ```
 */
export function copyScript(path: string, size: number, attempt: string): string {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const tmp = `'${path}.${attempt}.part'`;
  return `mkdir -p '${dir}' && head -c ${size} > ${tmp} && got=$(stat -c %s ${tmp}) ` +
    `|| { rm -f ${tmp}; exit 1; }; ` +
    `if [ "$got" != ${size} ]; then rm -f ${tmp}; ` +
    `echo "copy cut short: $got of ${size} bytes arrived" >&2; exit 1; fi; ` +
    `chmod 755 ${tmp} && mv ${tmp} '${path}' || { rm -f ${tmp}; exit 1; }`;
}

/** Streams one file into the pod, under a temporary name renamed when complete. */
async function sendFile(target: ExecTarget, file: PayloadFile, signal?: AbortSignal) {
  const path = `${AGENT_DIR}/${file.name}`;
  const attempt = [...crypto.getRandomValues(new Uint8Array(4))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const script = copyScript(path, file.size, attempt);
  let stderr = "";
  const source = await Deno.open(file.path);
  let exitCode: number;
  try {
    ({ exitCode } = await execInPod(target, ["sh", "-c", script], {
      stdin: source.readable,
      onStderr: (chunk) => stderr += new TextDecoder().decode(chunk),
      signal,
    }));
  } finally {
    try {
      source.close();
    } catch {
      // already closed by reading its stream to the end
    }
  }
  if (exitCode !== 0) {
    throw new TcpgadgetError(
      `copying ${file.name} into pod ${target.namespace}/${target.pod} failed (exit ${exitCode}): ${
        stderr.trim().split("\n")[0]
      }`,
    );
  }
}

/**
 * Copies the payload into the pod (files already there and intact are not
 * sent again), then verifies each file's size and SHA-256 in the pod.
 * Throws {@link DamagedCopyError} if a copy does not match (calling again
 * sends what is damaged).
 */
export async function uploadPayload(
  target: ExecTarget,
  payload: Payload,
  signal?: AbortSignal,
): Promise<UploadReport> {
  const started = performance.now();
  const pathOf = (file: PayloadFile) => `${AGENT_DIR}/${file.name}`;
  const matches = (digest: { size: number; sha256: string } | undefined, file: PayloadFile) =>
    digest?.size === file.size && digest.sha256 === file.sha256;
  const before = await remoteDigests(target, payload.files.map(pathOf), signal);
  const sent = payload.files.filter((file, i) => !matches(before[i], file));
  for (const file of sent) await sendFile(target, file, signal);
  if (sent.length > 0) {
    const after = await remoteDigests(target, sent.map(pathOf), signal);
    const damaged = sent.flatMap((file, i) =>
      matches(after[i], file) ? [] : [
        `${file.name}: ${
          after[i] ? `${after[i]!.size} bytes, sha256 ${after[i]!.sha256}` : "missing"
        }, expected ${file.size} bytes, sha256 ${file.sha256}`,
      ]
    );
    if (damaged.length > 0 && !signal?.aborted) {
      throw new DamagedCopyError(
        `copy into pod ${target.namespace}/${target.pod} is damaged: ${damaged.join("; ")}`,
      );
    }
  }
  return {
    bytes: sent.reduce((sum, file) => sum + file.size, 0),
    milliseconds: performance.now() - started,
    reused: payload.files.length - sent.length,
  };
}
