/**
 * A real DNS server for tests: dnsmasq (Debian's dnsmasq-base) in a network
 * namespace, answering only the records a test gives it (no upstream, no
 * hosts file, no cache of anything else).
 *
 * @module
 */

import { hasCommand } from "./privileges.ts";

/** Why dnsmasq tests cannot run here, or undefined. */
export const DNSMASQ_SKIP_REASON: string | undefined = hasCommand("dnsmasq")
  ? undefined
  : "dnsmasq not installed (apt-get install dnsmasq-base)";

/** Records and where to listen. */
export interface DnsmasqOptions {
  /** The network namespace it runs in (ip netns). */
  netns: string;
  /** Addresses it answers on, port 53 (UDP and TCP). */
  listen: string[];
  /** name -> its addresses (A and AAAA). */
  hosts?: Record<string, string[]>;
  /** alias -> target: a CNAME. */
  cnames?: Record<string, string>;
  /** TTL of the answers, seconds (dnsmasq's default for its own records is 0). */
  ttl?: number;
}

/** A running dnsmasq; disposing of it stops it. */
export interface Dnsmasq extends AsyncDisposable {
  /** Queries it answered, from its log. */
  log(): string;
}

/** Starts dnsmasq and waits until it answers on every listen address. */
export async function startDnsmasq(options: DnsmasqOptions): Promise<Dnsmasq> {
  const args = [
    "netns",
    "exec",
    options.netns,
    "dnsmasq",
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--no-resolv",
    "--no-hosts",
    "--no-poll",
    "--bind-interfaces",
    "--pid-file=",
    "--user=root",
    "--log-queries",
    "--log-facility=-",
    `--local-ttl=${options.ttl ?? 0}`,
    ...options.listen.map((address) => `--listen-address=${address}`),
    ...Object.entries(options.hosts ?? {}).map(([name, addrs]) =>
      `--host-record=${name},${addrs.join(",")}`
    ),
    ...Object.entries(options.cnames ?? {}).map(([alias, target]) => `--cname=${alias},${target}`),
  ];
  const child = new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).spawn();
  let log = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
  })();
  const server: Dnsmasq = {
    log: () => log,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await reading;
    },
  };
  // Ready once every address has its UDP and TCP socket.
  const deadline = performance.now() + 10_000;
  while (true) {
    const listening = new Deno.Command("ip", {
      args: ["netns", "exec", options.netns, "ss", "-Hlnut", "sport = :53"],
      stdout: "piped",
    }).outputSync();
    const lines = new TextDecoder().decode(listening.stdout);
    if (
      options.listen.every((a) => lines.split(`${a.includes(":") ? `[${a}]` : a}:53`).length === 3)
    ) {
      return server;
    }
    if (performance.now() > deadline) {
      await server[Symbol.asyncDispose]();
      throw new Error(`dnsmasq did not start: ${log.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
