/**
 * The exec stream's liveness check against a WebSocket server of the test's
 * own (the channel protocol only, no API server) that never answers pings,
 * as a kube-apiserver busy forwarding an upload to a slow kubelet seems to:
 * an upload the peer keeps reading is not dropped; a peer that stops
 * reading is.
 */
import * as k8s from "@kubernetes/client-node";
// @deno-types="@types/ws"
import { WebSocketServer } from "ws";
import type { Socket } from "node:net";
import assertNode from "node:assert/strict";
import { assertEquals } from "./helpers/assert.ts";
import { ExecDroppedError, execInPod, type ExecTarget } from "../k8s/api/exec.ts";

const PING_MS = 20;

/** A server of the v4 channel protocol that reads `size` bytes of stdin, then says Success. */
async function channelServer(options: { size: number; stopReading: boolean }) {
  const server = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    autoPong: false,
    handleProtocols: () => "v4.channel.k8s.io",
  });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  let received = 0;
  server.on("connection", (ws, request) => {
    if (options.stopReading) (request.socket as Socket).pause();
    ws.on("message", (data: Buffer) => {
      received += data.length - 1;
      if (received === options.size) {
        ws.send(Buffer.concat([Buffer.from([3]), Buffer.from('{"status":"Success"}')]));
        ws.close();
      }
    });
  });
  const { port } = server.address() as { port: number };
  return {
    port,
    get received() {
      return received;
    },
    close: () => {
      for (const client of server.clients) client.terminate();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function target(port: number): ExecTarget {
  const config = new k8s.KubeConfig();
  const server = `http://127.0.0.1:${port}`;
  config.loadFromOptions({
    clusters: [{ name: "c", server, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return {
    kubeconfig: { config, source: "test", context: "x", namespace: "ns", server },
    namespace: "ns",
    pod: "p",
    container: "c",
  };
}

async function* chunks(size: number): AsyncIterable<Uint8Array> {
  const chunk = new Uint8Array(64 * 1024);
  for (let sent = 0; sent < size; sent += chunk.length) {
    // A short pause now and then: the upload lasts many ping periods.
    if (sent % (1024 * 1024) === 0) await new Promise((r) => setTimeout(r, PING_MS));
    yield chunk;
  }
}

Deno.test("exec: an upload the peer keeps reading outlives unanswered pings", async () => {
  const size = 32 * 1024 * 1024;
  const server = await channelServer({ size, stopReading: false });
  try {
    const result = await execInPod(target(server.port), ["true"], {
      stdin: chunks(size),
      pingIntervalMs: PING_MS,
    });
    assertEquals([result.exitCode, server.received], [0, size]);
  } finally {
    await server.close();
  }
});

Deno.test("exec: a peer that stops reading and never answers pings is dropped", async () => {
  const size = 256 * 1024 * 1024;
  const server = await channelServer({ size, stopReading: true });
  try {
    await assertNode.rejects(
      execInPod(target(server.port), ["true"], { stdin: chunks(size), pingIntervalMs: PING_MS }),
      (error) =>
        error instanceof ExecDroppedError &&
        error.message === "exec stream to pod ns/p ended without an exit status",
    );
  } finally {
    await server.close();
  }
});
