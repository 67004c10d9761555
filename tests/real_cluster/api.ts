/**
 * A minimal client of the test cluster's API server, as the admin (client
 * certificate of group system:masters), for `up` and `down` themselves: the
 * tests use @kubernetes/client-node with the kubeconfig `up` prints.
 *
 * @module
 */

import { API_SERVER_URL } from "./layout.ts";
import { pki } from "./pki.ts";

export class ApiClient implements Disposable {
  readonly #client: Deno.HttpClient;

  constructor() {
    this.#client = Deno.createHttpClient({
      caCerts: [Deno.readTextFileSync(pki.ca)],
      cert: Deno.readTextFileSync(pki.cert("admin")),
      key: Deno.readTextFileSync(pki.key("admin")),
    });
  }

  /** The response's status and parsed body (text if not JSON); throws only on network errors. */
  async request(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = 5000,
  ): Promise<{ status: number; body: unknown }> {
    const response = await fetch(`${API_SERVER_URL}${path}`, {
      method,
      client: this.#client,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // plain text (/readyz)
    }
    return { status: response.status, body: parsed };
  }

  [Symbol.dispose](): void {
    this.#client.close();
  }
}
