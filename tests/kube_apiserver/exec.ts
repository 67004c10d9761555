/**
 * One pods/exec session over an upgraded WebSocket: the channel protocol
 * of k8s.io/apimachinery/pkg/util/httpstream/wsstream and the kubelet's
 * remotecommand server (channels 0 stdin, 1 stdout, 2 stderr, 3 status,
 * 4 resize; v5 adds 255 = close a stream), bridged to a real process in
 * the pod's sandbox, with flow control in both directions.
 *
 * @module
 */

// @deno-types="@types/ws"
import type { WebSocket } from "ws";
import { signalNumber } from "./kubelet.ts";
import type { PodSandbox } from "./sandbox.ts";

/** A timer handle (Node typings are in scope, so not `number`). */
type Timer = ReturnType<typeof setTimeout>;

/** Subprotocols the server accepts, binary and base64. */
export const EXEC_PROTOCOLS = [
  "v5.channel.k8s.io",
  "v4.channel.k8s.io",
  "v3.channel.k8s.io",
  "v2.channel.k8s.io",
  "channel.k8s.io",
  "v4.base64.channel.k8s.io",
  "v3.base64.channel.k8s.io",
  "v2.base64.channel.k8s.io",
  "base64.channel.k8s.io",
];

/**
 * Picks the subprotocol like wsstream's handshake: the first one the
 * client offers that the server supports. An empty offer means the
 * original binary protocol. Undefined if nothing matches.
 */
export function negotiateProtocol(offered: string[]): string | undefined {
  if (offered.length === 0) return "";
  return offered.find((p) => EXEC_PROTOCOLS.includes(p));
}

/** How to break a session on purpose (see the server's `dropExecStreams`). */
export interface DropPlan {
  /** Drop once this many stdin bytes arrived. */
  afterStdinBytes?: number;
  /** Drop once this many stdout+stderr bytes were sent. */
  afterOutputBytes?: number;
  /** Drop this long after the process started. */
  afterMs?: number;
  /**
   * Instead of cutting the connection, end the stream with this status on
   * the error channel and leave the command running, as kube-apiserver's
   * stream translator does when its leg to the kubelet ends (`Success`,
   * seen on a kubelet restart) or fails (`InternalError`).
   */
  endWith?: "Success" | "InternalError";
}

/** What a session runs. */
export interface ExecSessionOptions {
  ws: WebSocket;
  protocol: string;
  sandbox: PodSandbox;
  command: string[];
  env: Record<string, string>;
  cwd: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  /** Kill the process when the client goes away before it exits. */
  killOnDisconnect: boolean;
  drop?: DropPlan;
  /** `cgroup.procs` files of the container (kubelet files). */
  cgroupProcs?: string[];
}

const HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const CLOSE = 255;

/** Go's `%v` of a string slice: `[sh -c exit 3]`. */
function goSlice(items: string[]): string {
  return `[${items.join(" ")}]`;
}

/** A running exec session; `done` settles when it is over. */
export class ExecSession {
  readonly #o: ExecSessionOptions;
  readonly #base64: boolean;
  readonly #version: number;
  #open = true;
  #child: Deno.ChildProcess | undefined;
  #outputBytes = 0;
  #stdinBytes = 0;
  #dropTimer: Timer | undefined;
  readonly done: Promise<void>;
  /** The exit code, once the process ended. */
  exitCode: number | undefined;

  constructor(options: ExecSessionOptions) {
    this.#o = options;
    this.#base64 = options.protocol.includes("base64");
    const m = options.protocol.match(/^v(\d)\./);
    this.#version = m ? Number(m[1]) : 1;
    this.done = this.#run().catch((error) => {
      console.error("kube_apiserver: exec session failed:", error);
      this.#terminate();
    });
  }

  /** The PID of the exec'd process, once started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  #frame(channel: number, data: Uint8Array): Uint8Array | string {
    if (this.#base64) {
      let binary = "";
      for (let i = 0; i < data.length; i += 0x8000) {
        binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
      }
      return String.fromCharCode(48 + channel) + btoa(binary);
    }
    const frame = new Uint8Array(data.length + 1);
    frame[0] = channel;
    frame.set(data, 1);
    return frame;
  }

  /** Sends on a channel; resolves when it is safe to send more. */
  #send(channel: number, data: Uint8Array): Promise<void> {
    const ws = this.#o.ws;
    if (!this.#open || ws.readyState !== ws.OPEN) return Promise.resolve();
    const frame = this.#frame(channel, data);
    const binary = !this.#base64;
    if (ws.bufferedAmount < HIGH_WATER) {
      ws.send(frame, { binary });
      return Promise.resolve();
    }
    return new Promise((resolve) => ws.send(frame, { binary }, () => resolve()));
  }

  #terminate(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#o.ws.terminate();
  }

  #maybeDrop(): void {
    const drop = this.#o.drop;
    if (!drop || !this.#open) return;
    if (
      (drop.afterStdinBytes !== undefined && this.#stdinBytes >= drop.afterStdinBytes) ||
      (drop.afterOutputBytes !== undefined && this.#outputBytes >= drop.afterOutputBytes)
    ) {
      this.#drop();
    }
  }

  /** Breaks the session as the plan says: a cut, or an end with a status. */
  #drop(): void {
    const endWith = this.#o.drop?.endWith;
    if (endWith === undefined) return this.#terminate();
    const status = endWith === "Success" ? { metadata: {}, status: "Success" } : {
      metadata: {},
      status: "Failure",
      message: "Internal error occurred: error reading from error stream: EOF",
      reason: "InternalError",
      details: { causes: [{ message: "error reading from error stream: EOF" }] },
      code: 500,
    };
    void this.#finish(status);
  }

  /** Writes the final status on the error channel, in the protocol's form. */
  async #writeStatus(status: Record<string, unknown>): Promise<void> {
    if (this.#version >= 4) {
      await this.#send(ERROR, new TextEncoder().encode(JSON.stringify(status)));
    } else if (status.status !== "Success") {
      await this.#send(ERROR, new TextEncoder().encode(String(status.message)));
    }
  }

  #exitStatus(code: number): Record<string, unknown> {
    if (code === 0) return { metadata: {}, status: "Success" };
    // v5 goes through the API server's stream translator, which re-wraps the
    // kubelet's error; older protocols reach the kubelet's own message.
    const inner = this.#version >= 5
      ? `command terminated with exit code ${code}`
      : `error executing command ${goSlice(this.#o.command)}, exit code ${code}`;
    return {
      metadata: {},
      status: "Failure",
      message: `command terminated with non-zero exit code: ${inner}`,
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: String(code) }] },
    };
  }

  #internalError(message: string): Record<string, unknown> {
    const kubelet = `error executing command in container: ${message}`;
    const text = this.#version >= 5
      ? `Internal error occurred: Internal error occurred: ${kubelet}`
      : `Internal error occurred: ${kubelet}`;
    const cause = this.#version >= 5 ? `Internal error occurred: ${kubelet}` : kubelet;
    return {
      metadata: {},
      status: "Failure",
      message: text,
      reason: "InternalError",
      details: { causes: [{ message: cause }] },
      code: 500,
    };
  }

  async #finish(status: Record<string, unknown>): Promise<void> {
    await this.#writeStatus(status);
    if (this.#open) {
      this.#open = false;
      const ws = this.#o.ws;
      ws.close(1000);
      // A client that never answers the close frame is cut off.
      const timer = setTimeout(() => ws.terminate(), 2000);
      ws.once("close", () => clearTimeout(timer));
    }
  }

  async #run(): Promise<void> {
    const o = this.#o;
    const ws = o.ws;
    const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
    ws.on("error", () => {});

    if (o.drop && Object.keys(o.drop).length === 0) {
      this.#terminate();
      return;
    }
    // Tell the client the streams are ready: an empty frame on the lowest writable channel.
    await this.#send(o.stdout || o.tty ? STDOUT : o.stderr ? STDERR : ERROR, new Uint8Array());

    const problem = o.sandbox.checkExecutable(o.command[0], o.env.PATH ?? "");
    if (problem) {
      const id = crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
      await this.#finish(
        this.#internalError(
          `failed to exec in container: failed to start exec "${id}": OCI runtime exec failed: exec failed: unable to start container process: ${problem}: unknown`,
        ),
      );
      return;
    }

    const child = o.sandbox.spawn({
      argv: o.command,
      env: o.tty ? { TERM: "xterm", ...o.env } : o.env,
      cwd: o.cwd,
      stdin: o.stdin ? "piped" : "null",
      stdout: o.stdout || o.tty ? "piped" : "null",
      stderr: o.stderr || o.tty ? "piped" : "null",
      cgroupProcs: o.cgroupProcs,
    });
    this.#child = child;
    if (o.drop?.afterMs !== undefined) {
      this.#dropTimer = setTimeout(() => this.#drop(), o.drop.afterMs);
    }

    // stdin: bounded queue; pausing the socket pushes back on the client.
    let stdinWriter: WritableStreamDefaultWriter<Uint8Array> | undefined = o.stdin
      ? child.stdin.getWriter()
      : undefined;
    let pending = 0;
    let paused = false;
    let chain = Promise.resolve();
    const closeStdin = () => {
      const writer = stdinWriter;
      if (!writer) return;
      stdinWriter = undefined;
      chain = chain.then(() => writer.close()).catch(() => {});
    };
    const writeStdin = (data: Uint8Array) => {
      const writer = stdinWriter;
      if (!writer || data.length === 0) return;
      pending += data.length;
      if (pending > HIGH_WATER && !paused) {
        paused = true;
        ws.pause();
      }
      chain = chain.then(() => writer.write(data)).catch(() => {
        // The process closed its stdin: drop the rest.
        if (stdinWriter === writer) stdinWriter = undefined;
      }).finally(() => {
        pending -= data.length;
        if (paused && pending < LOW_WATER) {
          paused = false;
          ws.resume();
        }
      });
    };

    ws.on("message", (raw: Buffer, isBinary: boolean) => {
      let data: Uint8Array = raw;
      let channel: number;
      if (!isBinary && this.#base64) {
        const text = raw.toString("utf8");
        if (text.length === 0) return;
        channel = text.charCodeAt(0) - 48;
        data = Uint8Array.from(atob(text.slice(1)), (c) => c.charCodeAt(0));
      } else {
        if (data.length === 0) return;
        channel = data[0];
        if (this.#version >= 5 && channel === CLOSE) {
          if (data.length === 2 && data[1] === STDIN) closeStdin();
          return;
        }
        data = data.subarray(1);
      }
      if (channel === STDIN) {
        this.#stdinBytes += data.length;
        writeStdin(data);
        this.#maybeDrop();
      }
      // Resize (4) and unknown channels are ignored.
    });

    let disconnected = false;
    closed.then(() => {
      this.#open = false;
      if (this.#dropTimer !== undefined) clearTimeout(this.#dropTimer);
      if (this.exitCode !== undefined) return;
      disconnected = true;
      closeStdin();
      if (paused) ws.resume();
      if (o.killOnDisconnect) o.sandbox.signalGroup(child.pid, "SIGKILL");
    });

    const pump = async (stream: ReadableStream<Uint8Array> | null, channel: number) => {
      if (!stream) return;
      for await (const chunk of stream) {
        if (!this.#open) continue; // keep draining so the process never blocks
        this.#outputBytes += chunk.length;
        await this.#send(channel, chunk);
        this.#maybeDrop();
      }
    };
    const pumps = Promise.all([
      pump(o.stdout || o.tty ? child.stdout : null, STDOUT),
      pump(o.stderr || o.tty ? child.stderr : null, o.tty ? STDOUT : STDERR),
    ]);
    const status = await child.status;
    this.exitCode = status.signal ? 128 + signalNumber(status.signal) : status.code;
    closeStdin();
    await pumps;
    await chain;
    if (this.#dropTimer !== undefined) clearTimeout(this.#dropTimer);
    if (!disconnected) await this.#finish(this.#exitStatus(this.exitCode));
    await closed;
  }

  /** Ends the session abruptly (server shutdown). */
  abort(): void {
    if (this.#child && this.exitCode === undefined) {
      this.#o.sandbox.signalGroup(this.#child.pid, "SIGKILL");
    }
    this.#terminate();
  }
}
