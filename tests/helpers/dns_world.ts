/**
 * A small world of named destinations for the tests of names and egress:
 * a network namespace (a veth pair to this one) whose loopback holds the
 * test's addresses, dnsmasq answering their names (A, AAAA, CNAME), a
 * server listening on every one of them (IPv4 and IPv6), and the files a
 * process resolves with (resolv.conf, nsswitch.conf, hosts) to bind-mount
 * in a private mount namespace (the command tcpgadget runs in, so that
 * COMMAND inherits them).
 *
 * @module
 */

import { Actor } from "./actors.ts";
import { type Dnsmasq, startDnsmasq } from "./dnsmasq.ts";
import { createLinkedNetns, type LinkedNetns } from "./netns.ts";

function run(args: string[]): void {
  const result = new Deno.Command(args[0], { args: args.slice(1), stderr: "piped" }).outputSync();
  if (!result.success) {
    throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
}

/** Options of {@link DnsWorld.create}. */
export interface DnsWorldOptions {
  /** name -> the last octet (IPv4) and last group (IPv6) of its addresses: "11" -> .11 and ::11. */
  names: Record<string, string>;
  /** alias -> target (CNAME). */
  cnames?: Record<string, string>;
  /** Names only in the hosts file: name -> last octet (IPv4 only). */
  hosted?: Record<string, string>;
}

/** The world; disposing of it stops the server and dnsmasq and removes the namespace and files. */
export class DnsWorld implements AsyncDisposable {
  readonly netns: LinkedNetns;
  /** The directory of the files. */
  readonly dir: string;
  /** name -> [IPv4, IPv6] addresses. */
  readonly addresses: Record<string, [string, string]>;
  /** A name only in the hosts file -> its IPv4 address. */
  readonly hosted: Record<string, string>;
  /** The server (in the namespace), its IPv4 and IPv6 ports. */
  readonly server: Actor;
  readonly port4: number;
  readonly port6: number;
  readonly #dns: Dnsmasq;

  private constructor(
    fields: Omit<DnsWorld, "mounts" | "inside" | "files" | "address" | typeof Symbol.asyncDispose>,
    dns: Dnsmasq,
  ) {
    this.netns = fields.netns;
    this.dir = fields.dir;
    this.addresses = fields.addresses;
    this.hosted = fields.hosted;
    this.server = fields.server;
    this.port4 = fields.port4;
    this.port6 = fields.port6;
    this.#dns = dns;
  }

  static async create(options: DnsWorldOptions): Promise<DnsWorld> {
    const netns = createLinkedNetns();
    const cleanups: (() => PromiseLike<void>)[] = [() => netns[Symbol.asyncDispose]()];
    try {
      const v4 = netns.nsAddress.replace(/\.2$/, "");
      const v6 = netns.nsAddress6.replace(/::2$/, "");
      const addresses: Record<string, [string, string]> = {};
      for (const [name, last] of Object.entries(options.names)) {
        addresses[name] = [`${v4}.${last}`, `${v6}::${last}`];
      }
      const hosted: Record<string, string> = {};
      for (const [name, last] of Object.entries(options.hosted ?? {})) {
        hosted[name] = `${v4}.${last}`;
      }
      for (const address of [...Object.values(addresses).flat(), ...Object.values(hosted)]) {
        run(["ip", "-n", netns.name, "addr", "add", address, "dev", "lo"]);
      }
      const dns = await startDnsmasq({
        netns: netns.name,
        listen: [netns.nsAddress, netns.nsAddress6],
        hosts: addresses,
        cnames: options.cnames,
        ttl: 30,
      });
      cleanups.push(() => dns[Symbol.asyncDispose]());
      const dir = await Deno.makeTempDir({ prefix: "tcpgadget-dnsworld-" });
      cleanups.push(() => Deno.remove(dir, { recursive: true }));
      await Deno.writeTextFile(`${dir}/nsswitch.conf`, "hosts: files dns\n");
      await Deno.writeTextFile(
        `${dir}/hosts`,
        `127.0.0.1 localhost\n${
          Object.entries(hosted).map(([name, address]) => `${address} ${name}\n`).join("")
        }`,
      );
      await Deno.writeTextFile(`${dir}/resolv-ns`, `nameserver ${netns.nsAddress6}\n`);
      await Deno.writeTextFile(`${dir}/resolv-host`, `nameserver ${netns.nsAddress}\n`);
      const server = await Actor.start("tg-dw-server", { netns: netns.name });
      cleanups.push(() => server.stop());
      const { port: port4 } = await server.do("listen 0.0.0.0");
      const { port: port6 } = await server.do("listen :: v6only");
      return new DnsWorld({ netns, dir, addresses, hosted, server, port4, port6 }, dns);
    } catch (error) {
      for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {});
      throw error;
    }
  }

  /** The address of `name` for IP version `v`. */
  address(name: string, v: 4 | 6): string {
    return this.addresses[name][v === 4 ? 0 : 1];
  }

  /**
   * The files to bind-mount for a process that resolves with this world's
   * DNS server: `inside` the namespace (over its loopback, IPv6) or on the
   * host (over the veth pair, IPv4).
   */
  files(where: "inside" | "host"): Record<string, string> {
    return {
      "/etc/resolv.conf": `${this.dir}/resolv-${where === "inside" ? "ns" : "host"}`,
      "/etc/nsswitch.conf": `${this.dir}/nsswitch.conf`,
      "/etc/hosts": `${this.dir}/hosts`,
    };
  }

  /**
   * Words that run the command after them in a private mount namespace
   * with the files of `where` bind-mounted (vanishing with it): tcpgadget,
   * whose COMMAND then resolves with them too.
   */
  mounts(where: "inside" | "host"): string[] {
    const binds = Object.entries(this.files(where));
    return [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `${binds.map((_, i) => `mount --bind "$${2 * i + 2}" "$${2 * i + 1}" && `).join("")}` +
      `shift ${2 * binds.length} && exec "$@"`,
      "sh",
      ...binds.flat(),
    ];
  }

  /**
   * Words that run the command after them in the namespace's network (in
   * place: same pid, same mount namespace).
   */
  inside(): string[] {
    return ["nsenter", `--net=/run/netns/${this.netns.name}`];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.server.stop();
    await this.#dns[Symbol.asyncDispose]();
    await Deno.remove(this.dir, { recursive: true });
    await this.netns[Symbol.asyncDispose]();
  }
}
