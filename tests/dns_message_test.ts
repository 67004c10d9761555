/**
 * Reading DNS answers (core/dns_message.ts): what names each address gets,
 * through CNAME chains, and that untrusted bytes (random, truncated,
 * mutated, hostile) never throw and never give more than the bounds.
 */

// @ts-types="@types/dns-packet"
import * as dnsPacket from "dns-packet";
import {
  type DnsAddressRecord,
  MAX_ADDRESSES,
  MAX_CHAIN,
  parseDnsMessage,
  parseDnsOverTcp,
} from "../core/dns_message.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

type Answer = dnsPacket.Answer;

function response(question: string, answers: Answer[], extra: Partial<dnsPacket.Packet> = {}) {
  return new Uint8Array(dnsPacket.encode({
    type: "response",
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: "A", name: question }],
    answers,
    ...extra,
  }));
}

const a = (name: string, data: string, ttl = 60): Answer => ({ type: "A", name, data, ttl });
const aaaa = (name: string, data: string, ttl = 60): Answer => ({ type: "AAAA", name, data, ttl });
const cname = (name: string, data: string, ttl = 60): Answer => ({
  type: "CNAME",
  name,
  data,
  ttl,
});

Deno.test("dns message: A and AAAA of the question's name, addresses as events write them", () => {
  assertEquals(
    parseDnsMessage(
      response("Allowed.TEST.", [
        a("allowed.test", "10.0.0.1"),
        aaaa("allowed.test", "fd00:0:0:0:0:0:0:1"),
        aaaa("allowed.test", "::ffff:10.0.0.2"),
      ]),
    ),
    [
      { address: "10.0.0.1", name: "allowed.test", chain: ["allowed.test"], ttl: 60 },
      { address: "fd00::1", name: "allowed.test", chain: ["allowed.test"], ttl: 60 },
      // A dual-stack socket's connection to it is reported as IPv4.
      { address: "10.0.0.2", name: "allowed.test", chain: ["allowed.test"], ttl: 60 },
    ],
  );
});

Deno.test("dns message: CNAME chains are followed from the question, with the least TTL", () => {
  assertEquals(
    parseDnsMessage(
      response("www.shop.test", [
        cname("www.shop.test", "shop.cdn.test", 300),
        cname("shop.cdn.test", "edge-7.cdn.test", 20),
        a("edge-7.cdn.test", "192.0.2.7", 120),
        // Not on the chain: glue or a hostile extra record, never a name.
        a("bank.test", "192.0.2.66"),
        a("www.shop.test", "192.0.2.99"), // the owner of a CNAME has no address
      ]),
    ),
    [{
      address: "192.0.2.7",
      name: "www.shop.test",
      chain: ["www.shop.test", "shop.cdn.test", "edge-7.cdn.test"],
      ttl: 20,
    }],
  );
});

Deno.test("dns message: a CNAME loop ends, a long chain is cut at the bound", () => {
  assertEquals(
    parseDnsMessage(response("a.test", [cname("a.test", "b.test"), cname("b.test", "a.test")])),
    [],
  );
  const long = Array.from({ length: 40 }, (_, i) => cname(`n${i}.test`, `n${i + 1}.test`));
  assertEquals(parseDnsMessage(response("n0.test", [...long, a("n40.test", "10.0.0.9")])), []);
  const short = long.slice(0, MAX_CHAIN);
  const [record] = parseDnsMessage(
    response("n0.test", [...short, a(`n${MAX_CHAIN}.test`, "10.0.0.9")]),
  );
  assertEquals(record.chain.length, MAX_CHAIN + 1);
});

Deno.test("dns message: only NOERROR responses to standard queries, class IN", () => {
  const records = [a("x.test", "10.0.0.1")];
  assertEquals(parseDnsMessage(response("x.test", records)).length, 1);
  assertEquals(parseDnsMessage(response("x.test", records, { type: "query" })), []);
  assertEquals(parseDnsMessage(response("x.test", records, { flags: 3 /* NXDOMAIN */ })), []);
  assertEquals(
    parseDnsMessage(
      response("x.test", [{ type: "A", name: "x.test", data: "10.0.0.1", class: "CH" }]),
    ),
    [],
  );
});

Deno.test("dns message: names from the wire are shown with no control character", () => {
  const message = response("evil.test", [a("evil.test", "10.0.0.1")]);
  // The label "evil" (question and answer) rewritten to ESC [ 2 J.
  const label = [4, ..."evil"].map((c) => typeof c === "number" ? c : c.charCodeAt(0));
  let rewritten = 0;
  for (let at = 0; at + label.length <= message.length; at++) {
    if (label.every((byte, i) => message[at + i] === byte)) {
      message.set([0x1b, 0x5b, 0x32, 0x4a], at + 1);
      rewritten++;
    }
  }
  assertEquals(rewritten, 2);
  assertEquals(parseDnsMessage(message).map((r) => r.name), ["\\027[2j.test"]);
});

Deno.test("dns message: DNS over TCP, whole messages of a segment", () => {
  const one = response("one.test", [a("one.test", "10.0.0.1")]);
  const two = response("two.test", [a("two.test", "10.0.0.2")]);
  const framed = (m: Uint8Array) => Uint8Array.from([m.length >> 8, m.length & 0xff, ...m]);
  const both = Uint8Array.from([...framed(one), ...framed(two)]);
  assertEquals(parseDnsOverTcp(both).map((r) => r.name), ["one.test", "two.test"]);
  // The second split across segments: only the first.
  assertEquals(parseDnsOverTcp(both.subarray(0, both.length - 3)).map((r) => r.name), [
    "one.test",
  ]);
  assertEquals(parseDnsOverTcp(both.subarray(2)), []); // not at a message's start
});

Deno.test("dns message: at most MAX_ADDRESSES addresses from one message", () => {
  const many = Array.from({ length: 600 }, (_, i) => a("many.test", `10.1.${i >> 8}.${i & 255}`));
  assertEquals(parseDnsMessage(response("many.test", many)).length, MAX_ADDRESSES);
});

/** A deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function assertBounded(records: DnsAddressRecord[], what: string): void {
  assert(records.length <= MAX_ADDRESSES, `${what}: ${records.length} records`);
  for (const record of records) {
    assert(record.chain.length <= MAX_CHAIN + 1, `${what}: chain of ${record.chain.length}`);
    for (const name of record.chain) {
      const unprintable = [...name].find((c) => c <= " " || c > "~");
      assert(unprintable === undefined, `${what}: ${JSON.stringify(name)}`);
    }
  }
}

Deno.test("dns message: random, truncated and mutated bytes never throw", () => {
  const next = random(19);
  const valid = response("www.shop.test", [
    cname("www.shop.test", "shop.cdn.test"),
    a("shop.cdn.test", "192.0.2.7"),
    aaaa("shop.cdn.test", "2001:db8::7"),
  ]);
  // Every truncation of a valid answer.
  for (let length = 0; length < valid.length; length++) {
    assertBounded(parseDnsMessage(valid.subarray(0, length)), `cut at ${length}`);
    assertBounded(parseDnsOverTcp(valid.subarray(0, length)), `tcp cut at ${length}`);
  }
  // Random bytes, some with a plausible answer header.
  for (let i = 0; i < 5000; i++) {
    const bytes = Uint8Array.from({ length: Math.floor(next() * 700) }, () => next() * 256);
    if (bytes.length > 12 && i % 2) bytes.set([0x81, 0x80, 0, 1, 0, 4], 2);
    assertBounded(parseDnsMessage(bytes), `random ${i}`);
    assertBounded(parseDnsOverTcp(bytes), `random tcp ${i}`);
  }
  // A valid answer with a few bytes changed: pointers, lengths, counts.
  for (let i = 0; i < 5000; i++) {
    const bytes = valid.slice();
    for (let flips = 1 + Math.floor(next() * 4); flips > 0; flips--) {
      bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
    }
    assertBounded(parseDnsMessage(bytes), `mutated ${i}`);
  }
  // A compression pointer to itself, and one forward.
  const loop = valid.slice();
  loop.set([0xc0, 12], 12);
  assertEquals(parseDnsMessage(loop), []);
  const forward = valid.slice();
  forward.set([0xc0, 200], 12);
  assertEquals(parseDnsMessage(forward), []);
});
