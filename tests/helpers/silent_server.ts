/**
 * Servers on loopback that accept connections and never answer: one that
 * holds the TCP connection without a byte (a stuck proxy, a firewall that
 * lets the handshake through), and one that completes TLS and then never
 * answers HTTP (a TLS endpoint that is not an API server). Each writes a
 * kubeconfig that points at it, for the API client's bounds on waiting.
 *
 * @module
 */

import { Pki } from "../kube_apiserver/pki.ts";

/** What the server completes before it falls silent. */
export type Silence = "tcp" | "tls";

/** A server that never answers, with a kubeconfig for it. */
export class SilentServer implements AsyncDisposable {
  readonly url: string;
  /** A kubeconfig (context "silent") whose server is this one. */
  readonly kubeconfig: string;
  /** Connections accepted so far. */
  accepted = 0;
  readonly #listener: Deno.Listener;
  readonly #dir: string;
  readonly #connections = new Set<Deno.Conn>();
  readonly #accepting: Promise<void>;

  private constructor(listener: Deno.Listener, dir: string, tls: boolean) {
    this.#listener = listener;
    this.#dir = dir;
    this.url = `https://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    this.kubeconfig = `${dir}/kubeconfig`;
    this.#accepting = this.#accept(tls);
  }

  /** Starts a server that goes silent after `silence` (TCP accept, or TLS handshake). */
  static async start(silence: Silence): Promise<SilentServer> {
    const dir = await Deno.makeTempDir({ prefix: "tgtest-silent-" });
    let caData = "";
    let listener: Deno.Listener;
    if (silence === "tls") {
      const pki = await Pki.create(dir);
      const serving = await pki.serving();
      caData = btoa(pki.ca.cert);
      listener = Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: serving.cert,
        key: serving.key,
      });
    } else {
      listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    }
    const server = new SilentServer(listener, dir, silence === "tls");
    // A TCP-only server cannot present a certificate: the client is told to
    // skip verification, so that only the silence stops it.
    const trust = caData
      ? `certificate-authority-data: ${caData}`
      : "insecure-skip-tls-verify: true";
    await Deno.writeTextFile(
      server.kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: silent",
        `  cluster: {server: "${server.url}", ${trust}}`,
        "users:",
        "- name: someone",
        "  user: {token: not-checked}",
        "contexts:",
        "- name: silent",
        "  context: {cluster: silent, user: someone, namespace: default}",
        "current-context: silent",
        "",
      ].join("\n"),
    );
    return server;
  }

  async #accept(tls: boolean): Promise<void> {
    try {
      for await (const connection of this.#listener) {
        this.accepted++;
        this.#connections.add(connection);
        if (tls) {
          (connection as Deno.TlsConn).handshake().catch(() => {});
        }
      }
    } catch {
      // closed
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const connection of this.#connections) {
      try {
        connection.close();
      } catch {
        // closed by the client
      }
    }
    await Deno.remove(this.#dir, { recursive: true });
  }
}
