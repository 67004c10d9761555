/**
 * Copies between agents: a pod that has tcpgadget (or is receiving it)
 * serves it over the pod network, and another pod fetches it from there,
 * each through an exec of the programs in copy_scripts.ts. The client
 * only starts them and reads their progress: the bytes go from pod to pod.
 * What a fetch writes is checked in the fetching pod against the client's
 * size and SHA-256, never against anything the serving pod says.
 *
 * @module
 */

import { TcpgadgetError } from "../../core/errors.ts";
import { LineSplitter } from "../../core/line_splitter.ts";
import {
  COPY_EXIT,
  fetchCommand,
  type PeerAddress,
  type ReceivedFile,
  serveCommand,
  type ServedFile,
} from "./copy_scripts.ts";
import { execInPod, type ExecTarget } from "./exec.ts";

/** How long a server may take to say its port. */
const SERVER_START_TIMEOUT_MS = 20_000;
/** How long a stopped server may take to end before its stream is closed. */
const SERVER_STOP_GRACE_MS = 2_000;

/** Why a fetch from a peer failed. */
export type PeerCopyFailure =
  /** The peer could not be reached (no route, refused, a policy). */
  | "unreachable"
  /** The copy ended before its size, or stalled. */
  | "cut short"
  /** It arrived whole but is not the client's (SHA-256). */
  | "damaged"
  /** The agent image lacks perl (or sh, coreutils). */
  | "missing program"
  /** Anything else (its message says). */
  | "failed";

/** A fetch from a peer failed; `reason` says how. */
export class PeerCopyError extends TcpgadgetError {
  readonly reason: PeerCopyFailure;

  constructor(reason: PeerCopyFailure, message: string) {
    super(message);
    this.name = "PeerCopyError";
    this.reason = reason;
  }
}

function failureOf(exitCode: number): PeerCopyFailure {
  switch (exitCode) {
    case COPY_EXIT.unreachable:
      return "unreachable";
    case COPY_EXIT.cutShort:
      return "cut short";
    case COPY_EXIT.damaged:
      return "damaged";
    case COPY_EXIT.missingProgram:
      return "missing program";
    default:
      return "failed";
  }
}

/**
 * Fetches the file `name` from the server at `source` into `file` in the
 * target pod, checked there. `onProgress` gets the bytes received so far.
 * Throws {@link PeerCopyError} (or ExecDroppedError if the exec stream
 * dropped); returns quietly if `signal` aborted it.
 */
export async function fetchFromPeer(
  target: ExecTarget,
  source: PeerAddress,
  name: string,
  file: ReceivedFile,
  options: { onProgress?: (bytes: number) => void; signal?: AbortSignal } = {},
): Promise<void> {
  const messages: string[] = [];
  const stderr = new LineSplitter((line) => {
    const progress = line.match(/^progress (\d+)$/);
    if (progress) options.onProgress?.(Number(progress[1]));
    else messages.push(line);
  });
  const { exitCode } = await execInPod(target, fetchCommand(source, name, file), {
    onStderr: (chunk) => stderr.push(chunk),
    signal: options.signal,
  });
  if (exitCode === 0 || options.signal?.aborted) return;
  const reason = failureOf(exitCode);
  throw new PeerCopyError(
    reason,
    `${name}: ${messages.at(-1) ?? `exit ${exitCode}`}${
      reason === "missing program" ? " (the agent image has no perl)" : ""
    }`,
  );
}

/**
 * A server of a pod's copy (serveCommand), running through an exec whose
 * standard input stays open until {@link PeerServer.stop}.
 *
 * @example
 * ```ts ignore
 * const server = await PeerServer.start(target, pod.status.podIP, files, signal);
 * await fetchFromPeer(other, server.address, "deno", received);
 * await server.stop();
 * ```
 */
export class PeerServer {
  readonly address: PeerAddress;
  /** Settles when the server's exec has ended (stopped, or the server died). */
  readonly ended: Promise<void>;
  readonly #stopInput: () => void;
  readonly #close: AbortController;

  private constructor(
    address: PeerAddress,
    ended: Promise<void>,
    stopInput: () => void,
    close: AbortController,
  ) {
    this.address = address;
    this.ended = ended;
    this.#stopInput = stopInput;
    this.#close = close;
  }

  /** Starts a server of `files` on `ip` in the target pod; resolves once it listens. */
  static async start(
    target: ExecTarget,
    ip: string,
    files: ServedFile[],
    signal?: AbortSignal,
  ): Promise<PeerServer> {
    const close = new AbortController();
    const stopOnAbort = () => close.abort();
    signal?.addEventListener("abort", stopOnAbort, { once: true });
    let stopInput = () => {};
    const inputEnds = new Promise<void>((resolve) => stopInput = resolve);
    // Its standard input ends when the server must: protocol v5 says so to
    // the server, which then exits (over v4 the stream is closed instead).
    async function* input(): AsyncGenerator<Uint8Array> {
      await inputEnds;
      yield* [];
    }
    let port: number | undefined;
    let listening = () => {};
    const portKnown = new Promise<void>((resolve) => listening = resolve);
    const stdout = new LineSplitter((line) => {
      const match = line.match(/^port (\d+)$/);
      if (match && port === undefined) {
        port = Number(match[1]);
        listening();
      }
    });
    let stderr = "";
    const exec = execInPod(target, serveCommand(ip, files), {
      stdin: input(),
      onStdout: (chunk) => stdout.push(chunk),
      onStderr: (chunk) => stderr += new TextDecoder().decode(chunk),
      signal: close.signal,
    });
    const ended = exec.then(() => {}, () => {}).finally(() => {
      signal?.removeEventListener("abort", stopOnAbort);
    });
    const timeout = setTimeout(() => close.abort(), SERVER_START_TIMEOUT_MS);
    const outcome = await Promise.race([
      portKnown.then(() => "listening" as const),
      exec.then(
        ({ exitCode }) => ({ exitCode, error: undefined }),
        (error: Error) => ({ exitCode: -1, error }),
      ),
    ]);
    clearTimeout(timeout);
    if (outcome === "listening") {
      return new PeerServer({ ip, port: port! }, ended, stopInput, close);
    }
    stopInput();
    close.abort();
    const why = outcome.error?.message ?? (stderr.trim().split("\n").at(-1) ||
      (close.signal.aborted ? "it did not say its port in time" : `exit ${outcome.exitCode}`));
    throw new PeerCopyError(
      outcome.exitCode === COPY_EXIT.missingProgram ? "missing program" : "failed",
      `cannot serve the copy to other agents: ${why}${
        outcome.exitCode === COPY_EXIT.missingProgram ? " (the agent image has no perl)" : ""
      }`,
    );
  }

  /** Ends the server: its input ends, and its stream is closed if it does not stop. */
  async stop(): Promise<void> {
    this.#stopInput();
    const grace = setTimeout(() => this.#close.abort(), SERVER_STOP_GRACE_MS);
    await this.ended;
    clearTimeout(grace);
  }
}
