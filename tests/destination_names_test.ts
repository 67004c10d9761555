/**
 * Names of destinations in the real kernel, with a real DNS server:
 * dnsmasq in a network namespace this test makes answers A, AAAA and CNAME
 * records of the test's own names; processes resolve them with the system
 * resolver (getaddrinfo, with their own resolv.conf, nsswitch.conf and
 * hosts file bind-mounted in a private mount namespace) and connect; each
 * connection's name, source and CNAME chain is asserted exactly, as is the
 * absence of a name learned in another network namespace.
 */

import { TcpTracer } from "../core/tracer.ts";
import type { TcpEvent } from "../core/event.ts";
import { DnsSnooper } from "../core/dns_snooper.ts";
import { type DestinationName, DestinationNames } from "../core/destination_name.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import { Actor } from "./helpers/actors.ts";
import { assertEquals } from "./helpers/assert.ts";
import { collectEvents } from "./helpers/collect.ts";
import { createLinkedNetns, type LinkedNetns } from "./helpers/netns.ts";
import { needsBpf } from "./helpers/privileges.ts";
import { DNSMASQ_SKIP_REASON, startDnsmasq } from "./helpers/dnsmasq.ts";
import { assertProgramsGone, programIdsHeldBy } from "./helpers/bpf_programs.ts";

const noBpf = needsBpf("destination_names_test.ts");
if (!noBpf && DNSMASQ_SKIP_REASON) {
  console.warn(`SKIPPED (destination_names_test.ts, real DNS): ${DNSMASQ_SKIP_REASON}`);
}
const ignore = noBpf || DNSMASQ_SKIP_REASON !== undefined;

function run(args: string[]): void {
  const result = new Deno.Command(args[0], { args: args.slice(1), stderr: "piped" }).outputSync();
  if (!result.success) {
    throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
}

/** The test's addresses: on the namespace's loopback, beside its veth address. */
function addresses(netns: LinkedNetns) {
  const v4 = netns.nsAddress.replace(/\.2$/, "");
  const v6 = netns.nsAddress6.replace(/::2$/, "");
  const named = {
    allowed: [`${v4}.11`, `${v6}::11`],
    target: [`${v4}.12`, `${v6}::12`],
    hosted: [`${v4}.13`],
    remote: [`${v4}.14`],
    tcp: [`${v4}.15`],
  };
  for (const address of Object.values(named).flat()) {
    run(["ip", "-n", netns.name, "addr", "add", address, "dev", "lo"]);
  }
  return named;
}

Deno.test({
  name:
    "destination names: DNS answers (A, AAAA, CNAME, UDP and TCP) and the hosts file name connections, per network namespace",
  ignore,
  async fn() {
    await using netns = createLinkedNetns();
    const named = addresses(netns);
    await using _dns = await startDnsmasq({
      netns: netns.name,
      listen: [netns.nsAddress, netns.nsAddress6],
      hosts: {
        "allowed.test": named.allowed,
        "target.test": named.target,
        "remote.test": named.remote,
        "tcp.test": named.tcp,
      },
      cnames: { "cname.test": "target.test" },
      ttl: 30,
    });
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-dns-" });
    const before = new Set(programIdsHeldBy("self"));
    const tracer = TcpTracer.open({ kinds: { connect: true } });
    const snooper = DnsSnooper.open({ bootToRealtimeNs: tracer.bootToRealtimeNs });
    const ours = programIdsHeldBy("self").filter((id) => !before.has(id));
    const actors: Actor[] = [];
    try {
      const file = async (name: string, text: string) => {
        await Deno.writeTextFile(`${dir}/${name}`, text);
        return `${dir}/${name}`;
      };
      const nsswitch = await file("nsswitch.conf", "hosts: files dns\n");
      const hosts = await file("hosts", `127.0.0.1 localhost\n${named.hosted[0]} hosted.test\n`);
      // In the namespace: the server's IPv6 address (DNS over IPv6, on
      // loopback); on the host: its IPv4 one (over the veth pair).
      const binds = (nameserver: string) => ({
        "/etc/resolv.conf": `${dir}/resolv-${nameserver}`,
        "/etc/nsswitch.conf": nsswitch,
        "/etc/hosts": hosts,
      });
      await file(`resolv-${netns.nsAddress6}`, `nameserver ${netns.nsAddress6}\n`);
      await file(`resolv-${netns.nsAddress}`, `nameserver ${netns.nsAddress}\n`);
      const start = async (comm: string, options: Parameters<typeof Actor.start>[1]) => {
        const actor = await Actor.start(comm, options);
        actors.push(actor);
        return actor;
      };
      const server = await start("tg-dns-server", { netns: netns.name });
      const client = await start("tg-dns-client", {
        netns: netns.name,
        binds: binds(netns.nsAddress6),
      });
      // The host's processes: one with the usual files, one asking the
      // namespace's server through the veth pair.
      const stranger = await start("tg-dns-stranger", {});
      const remote = await start("tg-dns-remote", { binds: binds(netns.nsAddress) });
      const v4 = await server.do("listen 0.0.0.0");
      const v6 = await server.do("listen :: v6only");

      const expected = new Map<number, DestinationName | undefined>();
      const resolveAndConnect = async (
        actor: Actor,
        resolve: string,
        port: number,
        name: DestinationName | undefined,
        want: string[],
      ) => {
        const { addresses } = await actor.do(resolve);
        assertEquals(addresses, want, resolve);
        const connected = await actor.do(`connect ${addresses[0]} ${port}`);
        assertEquals(connected.error, null);
        expected.set(connected.sport, name);
      };
      const dns = (...chain: string[]): DestinationName => ({
        name: chain[0],
        source: "dns",
        chain,
      });
      await resolveAndConnect(client, "resolve allowed.test 4", v4.port, dns("allowed.test"), [
        named.allowed[0],
      ]);
      await resolveAndConnect(client, "resolve allowed.test 6", v6.port, dns("allowed.test"), [
        named.allowed[1],
      ]);
      await resolveAndConnect(
        client,
        "resolve cname.test 4",
        v4.port,
        dns("cname.test", "target.test"),
        [named.target[0]],
      );
      await resolveAndConnect(
        client,
        "resolve cname.test 6",
        v6.port,
        dns("cname.test", "target.test"),
        [named.target[1]],
      );
      await resolveAndConnect(
        client,
        "resolve hosted.test 4",
        v4.port,
        { name: "hosted.test", source: "hosts" },
        [named.hosted[0]],
      );
      await resolveAndConnect(
        client,
        `resolve_tcp tcp.test ${netns.nsAddress}`,
        v4.port,
        dns("tcp.test"),
        [named.tcp[0]],
      );
      // An address nobody named.
      const unnamed = await client.do(`connect ${netns.nsAddress} ${v4.port}`);
      expected.set(unnamed.sport, undefined);
      // allowed.test was answered in the namespace only: on the host, its
      // address has no name.
      const stray = await stranger.do(`connect ${named.allowed[0]} ${v4.port}`);
      assertEquals(stray.error, null);
      expected.set(stray.sport, undefined);
      // An answer that crossed the veth pair names the host's connection.
      await resolveAndConnect(remote, "resolve remote.test 4", v4.port, dns("remote.test"), [
        named.remote[0],
      ]);

      const events = await collectEvents(tracer, [v4.port, v6.port], expected.size);
      const names = new DestinationNames({ dns: snooper });
      const namesBySport = new Map(
        events.map((event: TcpEvent) => [event.sport, names.nameOf(event as TraceEvent)]),
      );
      assertEquals(
        Object.fromEntries([...namesBySport].sort(([a], [b]) => a - b)),
        Object.fromEntries([...expected].sort(([a], [b]) => a - b)),
      );
      assertEquals([snooper.lostAnswers(), snooper.cutAnswers()], [0n, 0n]);
    } finally {
      for (const actor of actors) await actor.stop();
      await snooper.close();
      await tracer.close();
      await Deno.remove(dir, { recursive: true });
    }
    await assertProgramsGone(ours);
  },
});
