/**
 * Running a command in a pod through the exec API (WebSocket, channel
 * protocol v5 or v4), with standard input paced by the socket's send
 * buffer: a 100 MB upload never sits in memory.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { PassThrough, Writable } from "node:stream";
import { Buffer } from "node:buffer";
import { TcpgadgetError } from "../core/errors.ts";

/** Where a command runs. */
export interface ExecTarget {
  config: k8s.KubeConfig;
  namespace: string;
  pod: string;
  container: string;
}

/** Options of {@link execInPod}. */
export interface ExecOptions {
  /** Bytes for the command's standard input, read as the socket drains. */
  stdin?: AsyncIterable<Uint8Array>;
  onStdout?: (chunk: Uint8Array) => void;
  onStderr?: (chunk: Uint8Array) => void;
  /** Aborting closes the stream (the command is then ended by the kubelet). */
  signal?: AbortSignal;
}

/** How a command ended. */
export interface ExecResult {
  exitCode: number;
}

/** The stream ended without the command's status: the connection dropped. */
export class ExecDroppedError extends TcpgadgetError {
  constructor(message: string) {
    super(message);
    this.name = "ExecDroppedError";
  }
}

// Bytes queued in the socket before reading more input.
const SEND_BUFFER_LIMIT = 4 * 1024 * 1024;

interface StatusObject {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/** The exit code in an exec status (channel 3), or an error for other failures. */
export function exitCodeOf(status: StatusObject): number {
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  if (status.reason === "NonZeroExitCode" && cause?.message) return Number(cause.message);
  throw new TcpgadgetError(`exec failed: ${status.message ?? JSON.stringify(status)}`);
}

function writable(onChunk?: (chunk: Uint8Array) => void): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      onChunk?.(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      done();
    },
  });
}

/**
 * Runs `command` in a container and resolves when it ends, with its exit
 * code. Rejects with {@link ExecDroppedError} if the stream ends without a
 * status, and with a one-line error if the API refuses the exec.
 */
export async function execInPod(
  target: ExecTarget,
  command: string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const stdin = options.stdin ? new PassThrough() : null;
  let status: StatusObject | undefined;
  const exec = new k8s.Exec(target.config);
  // deno-lint-ignore no-explicit-any
  let socket: any;
  try {
    socket = await exec.exec(
      target.namespace,
      target.pod,
      target.container,
      command,
      writable(options.onStdout),
      writable(options.onStderr),
      stdin,
      false,
      (received: StatusObject) => {
        status = received;
      },
    );
  } catch (error) {
    throw execRefused(error, target);
  }
  const closed = new Promise<void>((resolve) => {
    if (socket.readyState === 3 /* CLOSED */) resolve();
    else socket.on("close", () => resolve());
  });
  const abort = () => socket.close();
  options.signal?.addEventListener("abort", abort, { once: true });
  try {
    if (options.stdin && stdin) {
      for await (const chunk of options.stdin) {
        if (socket.readyState !== 1 /* OPEN */) break;
        // Pace the upload by what the socket has actually sent.
        while (socket.bufferedAmount > SEND_BUFFER_LIMIT && socket.readyState === 1) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        stdin.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      }
      // v5: tells the server that standard input is done.
      stdin.end();
    }
    await closed;
  } finally {
    options.signal?.removeEventListener("abort", abort);
  }
  if (!status) {
    if (options.signal?.aborted) return { exitCode: -1 };
    throw new ExecDroppedError(
      `exec stream to pod ${target.namespace}/${target.pod} ended without an exit status`,
    );
  }
  return { exitCode: exitCodeOf(status) };
}

function execRefused(error: unknown, target: ExecTarget): TcpgadgetError {
  // client-node reports a refused upgrade as an Error whose message holds
  // the HTTP status and the Status object the server sent.
  const message = error instanceof Error ? error.message : String(error);
  const code = Number(message.match(/\b(4\d\d|5\d\d)\b/)?.[1] ?? 0);
  const statusMessage = message.match(/"message":"((?:[^"\\]|\\.)*)"/)?.[1];
  if (code === 403) {
    return new TcpgadgetError(
      `permission denied: tcpgadget needs verb "create" on resource "pods/exec" in namespace "${target.namespace}"${
        statusMessage ? `; ${statusMessage}` : ""
      }`,
      { cause: error },
    );
  }
  return new TcpgadgetError(
    `exec into pod ${target.namespace}/${target.pod} failed: ${
      statusMessage ?? message.split("\n")[0]
    }`,
    { cause: error },
  );
}
