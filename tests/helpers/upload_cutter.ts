/**
 * A TCP proxy in front of a real API server that breaks an upload the way
 * a network can: it forwards every connection (TLS passes through
 * untouched) until one has sent `cutAfter` bytes to the server; it then
 * closes the client's side (the client sees its exec stream drop) but
 * holds the server's side open and silent, so that the API server, the
 * kubelet and containerd keep the command of that attempt running, stdin
 * open. The next connection to send `pauseAfter` bytes (the retry) is
 * paused; the test then lets the first attempt go on (`releaseFirst`:
 * closing the held side ends its standard input), and resumes the retry.
 *
 * @module
 */

const UPSTREAM_BUFFER = 256 * 1024;

/** One forwarded connection. */
interface Link {
  client: Deno.TcpConn;
  server: Deno.TcpConn;
  /** Bytes forwarded from the client to the server. */
  sent: number;
  /** Resolves when forwarding from the client may go on. */
  gate?: Promise<void>;
  open?: () => void;
}

/** See the module's documentation. */
export class UploadCutter implements AsyncDisposable {
  readonly port: number;
  readonly #listener: Deno.TcpListener;
  readonly #upstream: Deno.ConnectOptions;
  readonly #cutAfter: number;
  readonly #pauseAfter: number;
  readonly #links = new Set<Link>();
  #first: Link | undefined;
  #second: Link | undefined;
  #onPaused: (() => void) | undefined;
  /** Resolves once the retry is paused. */
  readonly retryPaused: Promise<void>;

  constructor(upstream: Deno.ConnectOptions, cutAfter: number, pauseAfter: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#upstream = upstream;
    this.#cutAfter = cutAfter;
    this.#pauseAfter = pauseAfter;
    this.retryPaused = new Promise((resolve) => this.#onPaused = resolve);
    this.#accept();
  }

  /** Whether the first attempt's connection was cut. */
  get cut(): boolean {
    return this.#first !== undefined;
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) {
      let server: Deno.TcpConn;
      try {
        server = await Deno.connect(this.#upstream);
      } catch {
        client.close();
        continue;
      }
      const link: Link = { client, server, sent: 0 };
      this.#links.add(link);
      this.#forwardUp(link);
      this.#forwardDown(link);
    }
  }

  /** Client to server: counted, cut, paused. */
  async #forwardUp(link: Link): Promise<void> {
    const buffer = new Uint8Array(UPSTREAM_BUFFER);
    try {
      while (true) {
        if (link.gate) await link.gate;
        if (link === this.#first) return; // held: nothing more goes up
        const n = await link.client.read(buffer);
        if (n === null) break;
        let chunk = buffer.subarray(0, n);
        if (!this.#first && link.sent + n >= this.#cutAfter) {
          // Up to the cut, then the client's side goes; the server's stays.
          chunk = chunk.subarray(0, this.#cutAfter - link.sent);
          await writeAll(link.server, chunk);
          link.sent += chunk.length;
          this.#first = link;
          link.client.close();
          return;
        }
        await writeAll(link.server, chunk);
        link.sent += n;
        if (this.#first && !this.#second && link !== this.#first && link.sent >= this.#pauseAfter) {
          this.#second = link;
          link.gate = new Promise((resolve) => link.open = resolve);
          this.#onPaused?.();
        }
      }
      link.server.closeWrite();
    } catch {
      // either side gone
    }
  }

  /** Server to client, untouched (nothing reaches a cut client). */
  async #forwardDown(link: Link): Promise<void> {
    const buffer = new Uint8Array(UPSTREAM_BUFFER);
    try {
      while (true) {
        const n = await link.server.read(buffer);
        if (n === null) break;
        if (link === this.#first) continue;
        await writeAll(link.client, buffer.subarray(0, n));
      }
      if (link !== this.#first) link.client.closeWrite();
    } catch {
      // either side gone
    }
  }

  /** Closes the first attempt's held connection: the API server ends its stdin. */
  releaseFirst(): void {
    try {
      this.#first?.server.close();
    } catch {
      // already closed
    }
  }

  /** Lets the paused retry go on. */
  resumeRetry(): void {
    const second = this.#second;
    if (!second) return;
    second.gate = undefined;
    second.open?.();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    this.resumeRetry();
    for (const link of this.#links) {
      for (const conn of [link.client, link.server]) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
    }
    await Promise.resolve();
  }
}

async function writeAll(conn: Deno.TcpConn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await conn.write(data.subarray(written));
}
