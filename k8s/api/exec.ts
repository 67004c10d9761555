/**
 * Running a command in a pod through the exec API: a WebSocket with the
 * channel protocol (v5, else v4) that kubectl speaks, authenticated by the
 * kubeconfig (client-node's KubeConfig applies certificates, tokens and
 * exec plugins). Standard input is paced by what the socket has actually
 * sent, so a 100 MB upload never sits in memory; a refused exec is reported
 * with the API server's own reason (which verb RBAC denies, a pod that is
 * gone); a server that does not complete the connection (TCP, TLS, the
 * WebSocket upgrade) within the API bound is said not to answer; a
 * connection that dies later without a word is noticed by pings.
 *
 * @module
 */

import "./silence_node_warnings.ts";
import * as k8s from "@kubernetes/client-node";
// @deno-types="@types/ws"
import WebSocket from "ws";
import { Buffer } from "node:buffer";
import { TcpgadgetError } from "../../core/errors.ts";
import { apiError, noAnswerError } from "./api_errors.ts";
import { apiTimeoutMs } from "./api_timeout.ts";
import type { LoadedKubeconfig } from "./kubeconfig.ts";

/** Where a command runs. */
export interface ExecTarget {
  kubeconfig: LoadedKubeconfig;
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
  /**
   * Ping period; the stream counts as dropped after three without an
   * answer (default 20 s). A stream without stdin also sends a keep-alive
   * message each period.
   */
  pingIntervalMs?: number;
  /** How long opening the stream may take (default: api_timeout.ts's bound). */
  openTimeoutMs?: number;
}

/** How a command ended. */
export interface ExecResult {
  /** The command's exit status; -1 if the stream was closed by the signal first. */
  exitCode: number;
}

/** The stream ended without the command's status: the connection dropped. */
export class ExecDroppedError extends TcpgadgetError {
  constructor(message: string) {
    super(message);
    this.name = "ExecDroppedError";
  }
}

// Bytes handed to the socket and not yet written out before reading more
// input: enough to keep a fast link busy (as fast here as 4 MiB, or as one
// frame at a time), small enough to stay out of memory.
const IN_FLIGHT_LIMIT = 1024 * 1024;

const PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const STATUS = 3;
const CLOSE = 255;

interface StatusObject {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/**
 * The exit code in an exec status (channel 3). Any other failure is the
 * API server's or the kubelet's, not the command's (the API server's leg
 * to the kubelet broke: kube-apiserver's stream translator reports it as
 * an InternalError): an {@link ExecDroppedError}, since the command may
 * still run.
 *
 * @example
 * ```ts
 * import { ExecDroppedError, exitCodeOf } from "./exec.ts";
 * import assert from "node:assert/strict";
 * assert.equal(exitCodeOf({ status: "Success" }), 0);
 * assert.equal(exitCodeOf({
 *   status: "Failure", reason: "NonZeroExitCode",
 *   details: { causes: [{ reason: "ExitCode", message: "3" }] },
 * }), 3);
 * assert.throws(
 *   () => exitCodeOf({ status: "Failure", reason: "InternalError", message: "Internal error occurred: EOF" }),
 *   ExecDroppedError,
 * );
 * ```
 */
export function exitCodeOf(status: StatusObject): number {
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  if (status.reason === "NonZeroExitCode" && cause?.message) return Number(cause.message);
  throw new ExecDroppedError(`exec failed: ${status.message ?? JSON.stringify(status)}`);
}

/** The WebSocket URL of an exec request. */
export function execUrl(
  server: string,
  target: Pick<ExecTarget, "namespace" | "pod" | "container">,
  command: string[],
  stdin: boolean,
) {
  const url = new URL(
    `${server.replace(/\/+$/, "")}/api/v1/namespaces/${encodeURIComponent(target.namespace)}` +
      `/pods/${encodeURIComponent(target.pod)}/exec`,
  );
  for (const word of command) url.searchParams.append("command", word);
  url.searchParams.set("container", target.container);
  url.searchParams.set("stdout", "true");
  url.searchParams.set("stderr", "true");
  if (stdin) url.searchParams.set("stdin", "true");
  url.protocol = url.protocol === "http:" ? "ws:" : "wss:";
  return url;
}

/**
 * Runs `command` in a container and resolves when it ends, with its exit
 * code. Rejects with {@link ExecDroppedError} if the connection fails or
 * ends without a status, and with a one-line error if the API refuses the
 * exec.
 */
export async function execInPod(
  target: ExecTarget,
  command: string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const { config, server } = target.kubeconfig;
  const url = execUrl(server, target, command, options.stdin !== undefined);
  // deno-lint-ignore no-explicit-any
  const wsOptions: any = {};
  await config.applyToHTTPSOptions(wsOptions);
  if (options.signal?.aborted) return { exitCode: -1 };
  const ws = new WebSocket(url, PROTOCOLS, wsOptions);
  let refusal: { code: number; body: string } | undefined;
  ws.on("unexpected-response", (_request, response) => {
    // The body is the API server's Status: keep its reason, then give up.
    const chunks: Buffer[] = [];
    response.on("data", (chunk: Buffer) => chunks.push(chunk));
    response.on("end", () => {
      refusal = { code: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() };
      ws.terminate();
    });
    response.on("error", () => ws.terminate());
  });
  let status: StatusObject | undefined;
  let socketError: Error | undefined;
  const closed = new Promise<void>((resolve) => ws.on("close", () => resolve()));
  ws.on("error", (error) => socketError ??= error);
  // A server that accepts the connection and never completes TLS or the
  // upgrade is given up on (ws's handshakeTimeout is an idle timeout of
  // the socket, which a trickle of bytes would defeat).
  const openTimeoutMs = options.openTimeoutMs ?? apiTimeoutMs();
  let timedOut = false;
  const openTimer = setTimeout(() => {
    timedOut = true;
    ws.terminate();
  }, openTimeoutMs);
  const abortOpen = () => ws.terminate();
  options.signal?.addEventListener("abort", abortOpen, { once: true });
  const opened = await new Promise<boolean>((resolve) => {
    ws.once("open", () => resolve(true));
    ws.once("close", () => resolve(false));
  });
  clearTimeout(openTimer);
  options.signal?.removeEventListener("abort", abortOpen);
  if (!opened) {
    if (refusal) throw execRefused(refusal, target, server);
    if (options.signal?.aborted) return { exitCode: -1 };
    if (timedOut) throw noAnswerError(target.kubeconfig, openTimeoutMs);
    throw new ExecDroppedError(
      `exec into pod ${target.namespace}/${target.pod} failed: ${
        socketError?.message.split("\n")[0] ?? "connection closed"
      }`,
    );
  }

  ws.on("message", (data: Buffer) => {
    if (data.length === 0) return;
    const payload = new Uint8Array(data.buffer, data.byteOffset + 1, data.byteLength - 1);
    switch (data[0]) {
      case STDOUT:
        options.onStdout?.(payload);
        break;
      case STDERR:
        options.onStderr?.(payload);
        break;
      case STATUS:
        try {
          status = JSON.parse(new TextDecoder().decode(payload));
        } catch {
          status = { status: "Failure", message: new TextDecoder().decode(payload) };
        }
        break;
    }
  });

  // A peer that vanished without closing (a node that lost power, a NAT that
  // forgot us) would leave the stream open forever: ping it.
  let unanswered = 0;
  ws.on("pong", () => unanswered = 0);
  ws.on("message", () => unanswered = 0);
  // While an upload runs, a pong waits behind the stdin already queued,
  // which a loaded kubelet or container may take minutes to read; every
  // chunk the socket writes out proves the peer is reading (a peer that
  // vanished stops taking bytes, and pings then go unanswered).
  const alive = () => unanswered = 0;
  // Pings do not keep an exec stream open: its idle timeout (kube-apiserver's
  // stream translator: 4 h for v5; containerd's stream_idle_timeout, 4 h by
  // default, for v4) is reset by messages only. A stream without standard
  // input, quiet for hours (a tracer on an idle node), also sends an empty
  // message on the stdin channel, which the server discards.
  const keepAlive = options.stdin === undefined ? Buffer.from([STDIN]) : undefined;
  const pinger = setInterval(() => {
    if (++unanswered > 3) return ws.terminate();
    ws.ping();
    if (keepAlive) ws.send(keepAlive);
  }, options.pingIntervalMs ?? 20_000);

  let closeTimer: ReturnType<typeof setTimeout> | undefined;
  const abort = () => {
    ws.close();
    // A server that does not answer the close frame is not waited for.
    closeTimer = setTimeout(() => ws.terminate(), 2000);
  };
  options.signal?.addEventListener("abort", abort, { once: true });
  try {
    if (options.stdin) await sendStdin(ws, options.stdin, alive);
    await closed;
  } finally {
    clearInterval(pinger);
    clearTimeout(closeTimer);
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

/** Streams standard input, at most IN_FLIGHT_LIMIT bytes ahead of the socket. */
async function sendStdin(
  ws: WebSocket,
  stdin: AsyncIterable<Uint8Array>,
  onWritten: () => void,
): Promise<void> {
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const sent = (bytes: number) => (error?: Error) => {
    if (!error) onWritten();
    inFlight -= bytes;
    if (inFlight <= IN_FLIGHT_LIMIT / 2) drained?.();
  };
  const gone = () => ws.readyState !== WebSocket.OPEN;
  ws.once("close", () => drained?.());
  // A command can end (and its stream close) while its input waits for
  // more: the wait ends with the stream, else the exec would never return
  // (a peer server that cannot listen, whose input ends only when told).
  const closed = new Promise<undefined>((resolve) => {
    if (gone()) resolve(undefined);
    else ws.once("close", () => resolve(undefined));
  });
  const input = stdin[Symbol.asyncIterator]();
  for (;;) {
    const next = await Promise.race([input.next(), closed]);
    if (next === undefined || gone()) {
      // Its cleanup (closing a file) runs once its pending read settles.
      input.return?.()?.catch(() => {});
      return;
    }
    if (next.done) break;
    const chunk = next.value;
    const frame = Buffer.allocUnsafe(chunk.byteLength + 1);
    frame[0] = STDIN;
    frame.set(chunk, 1);
    inFlight += frame.length;
    ws.send(frame, sent(frame.length));
    while (inFlight > IN_FLIGHT_LIMIT && !gone()) {
      await new Promise<void>((resolve) => drained = resolve);
      drained = undefined;
    }
  }
  // v5 can say that standard input is done; over v4 the command must stop
  // reading by itself (the upload uses `head -c SIZE`).
  if (!gone() && ws.protocol === PROTOCOLS[0]) ws.send(Buffer.from([CLOSE, STDIN]));
}

function execRefused(
  refusal: { code: number; body: string },
  target: ExecTarget,
  server: string,
): TcpgadgetError {
  let status: StatusObject = {};
  try {
    status = JSON.parse(refusal.body);
  } catch {
    status = { message: refusal.body.trim() };
  }
  if (refusal.code === 401 || refusal.code === 403) {
    return apiError(
      new k8s.ApiException(refusal.code, status.message ?? "", status, {}),
      { verb: "create", resource: "pods/exec", namespace: target.namespace, name: target.pod },
      { server },
    );
  }
  return new TcpgadgetError(
    `exec into pod ${target.namespace}/${target.pod} refused (${refusal.code}): ${
      (status.message ?? "").split("\n")[0]
    }`,
  );
}
