/**
 * Which name a connection gets (core/destination_name.ts and
 * core/dns_name_table.ts), with answers handed in by a source that stands
 * for the kernel's ring: order of answers and connections, several names
 * for an address, expiry and the memory bounds. The real kernel and DNS
 * server are in destination_names_test.ts.
 */

// @ts-types="@types/dns-packet"
import * as dnsPacket from "dns-packet";
import { DestinationNames } from "../core/destination_name.ts";
import type { DnsAnswer, DnsAnswerSource } from "../core/dns_answer.ts";
import { DnsNameTable } from "../core/dns_name_table.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import { assertEquals } from "./helpers/assert.ts";

const S = 1_000_000_000n;

function answer(atSec: number, netns: number, name: string, address: string, ttl = 60) {
  const type = address.includes(":") ? "AAAA" : "A";
  const payload = new Uint8Array(dnsPacket.encode({
    type: "response",
    flags: dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type, name }],
    answers: [{ type, name, data: address, ttl }],
  }));
  return { timeNs: BigInt(atSec) * S, netns, transport: "udp", payload, cut: false } as const;
}

/**
 * Answers in a ring as the kernel writes them: each is there from its
 * time; a drain hands out those that are there "now".
 */
class FakeRing implements DnsAnswerSource {
  readonly pending: DnsAnswer[] = [];
  nowSec = 0;
  drains = 0;

  drain(handler: (answer: DnsAnswer) => void): bigint {
    this.drains++;
    const now = BigInt(this.nowSec) * S;
    while (this.pending.length && this.pending[0].timeNs <= now) handler(this.pending.shift()!);
    return now;
  }
}

function connect(atSec: number, netns: number, daddr: string): TraceEvent {
  return {
    type: "C",
    timeSec: atSec,
    timeNsec: 0,
    pid: 0, // no process: no hosts file
    tid: 0,
    uid: 0,
    gid: 0,
    comm: "",
    mntns: 0,
    netns,
    cgroupId: 0,
    ipversion: daddr.includes(":") ? 6 : 4,
    saddr: "",
    sport: 0,
    daddr,
    dport: 443,
    node: "",
    namespace: "",
    pod: "",
    container: "",
  };
}

Deno.test("destination name: an answer read after the connection that it came before still names it", () => {
  const ring = new FakeRing();
  const names = new DestinationNames({ dns: ring, hosts: false });
  ring.pending.push(answer(100, 7, "early.test", "10.0.0.1"));
  // The connection was read at second 101; the answer (second 100) is
  // still in its ring: naming it reads the ring first.
  ring.nowSec = 101;
  assertEquals(names.nameOf(connect(101, 7, "10.0.0.1"))?.name, "early.test");
  // One read of the ring for every connection before the time it reached.
  names.nameOf(connect(100, 7, "10.9.9.9"));
  names.nameOf(connect(100, 7, "10.9.9.8"));
  assertEquals(ring.drains, 1);
});

Deno.test("destination name: an answer that came after the connection does not name it", () => {
  const ring = new FakeRing();
  const names = new DestinationNames({ dns: ring, hosts: false });
  ring.pending.push(answer(200, 7, "late.test", "10.0.0.2"));
  ring.nowSec = 300;
  assertEquals(names.nameOf(connect(150, 7, "10.0.0.2")), undefined);
  assertEquals(names.nameOf(connect(250, 7, "10.0.0.2"))?.name, "late.test");
});

Deno.test("destination name: of several names for an address, the most recent answer before the connection", () => {
  const ring = new FakeRing();
  const names = new DestinationNames({ dns: ring, hosts: false });
  ring.pending.push(
    answer(10, 7, "first.test", "10.0.0.3"),
    answer(20, 7, "second.test", "10.0.0.3"),
    answer(30, 7, "first.test", "10.0.0.3"), // asked again
    answer(40, 8, "other-namespace.test", "10.0.0.3"),
  );
  ring.nowSec = 50;
  const at = (sec: number, netns = 7) => names.nameOf(connect(sec, netns, "10.0.0.3"))?.name;
  assertEquals([at(15), at(25), at(35), at(45), at(45, 8), at(5)], [
    "first.test",
    "second.test",
    "first.test",
    "first.test",
    "other-namespace.test",
    undefined,
  ]);
});

Deno.test("dns name table: names expire after their TTL, kept at least the minimum retention", () => {
  const table = new DnsNameTable({ minRetentionSec: 300, maxRetentionSec: 3600 });
  const record = (name: string, address: string, ttl: number) => [{
    address,
    name,
    chain: [name],
    ttl,
  }];
  table.add(0n, 1, record("zero.test", "10.0.0.1", 0));
  table.add(0n, 1, record("hour.test", "10.0.0.2", 3600));
  table.add(0n, 1, record("huge.test", "10.0.0.3", 2 ** 31 - 1));
  const at = (address: string, sec: number) => table.lookup(1, address, BigInt(sec) * S)?.name;
  assertEquals([at("10.0.0.1", 299), at("10.0.0.1", 301)], ["zero.test", undefined]);
  assertEquals([at("10.0.0.2", 3599), at("10.0.0.2", 3601)], ["hour.test", undefined]);
  assertEquals([at("10.0.0.3", 3599), at("10.0.0.3", 3601)], ["huge.test", undefined]);
});

Deno.test("dns name table: memory is bounded: addresses, and names per address", () => {
  const table = new DnsNameTable({ maxAddresses: 100, namesPerAddress: 2 });
  for (let i = 0; i < 1000; i++) {
    table.add(BigInt(i) * S, 1, [{
      address: `10.0.${i >> 8}.${i & 255}`,
      name: `n${i}.test`,
      chain: [`n${i}.test`],
      ttl: 60,
    }]);
  }
  assertEquals(table.size, 100);
  // The least recently answered went first.
  assertEquals(table.lookup(1, "10.0.3.231", 1000n * S)?.name, "n999.test");
  assertEquals(table.lookup(1, "10.0.0.0", 1000n * S), undefined);
  for (let i = 0; i < 5; i++) {
    table.add(BigInt(2000 + i) * S, 1, [{
      address: "10.9.0.1",
      name: `name${i}.test`,
      chain: [`name${i}.test`],
      ttl: 600,
    }]);
  }
  const at = (sec: number) => table.lookup(1, "10.9.0.1", BigInt(sec) * S)?.name;
  // The two most recent names are kept; an older connection finds none
  // of the forgotten ones.
  assertEquals([at(2010), at(2004), at(2003)], ["name4.test", "name3.test", undefined]);
});

Deno.test("dns name table: expired names are swept", () => {
  const table = new DnsNameTable({ minRetentionSec: 1, maxRetentionSec: 1 });
  for (let i = 0; i < 5000; i++) {
    table.add(BigInt(i) * S, 1, [{
      address: `10.1.${i >> 8}.${i & 255}`,
      name: "x.test",
      chain: ["x.test"],
      ttl: 1,
    }]);
  }
  // Swept every 4096 names: those expired more than a minute before.
  assertEquals(table.size < 5000 - 4000, true, `${table.size} addresses kept`);
});
