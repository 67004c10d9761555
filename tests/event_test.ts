/** Decoding of `struct event` records, without privileges. */

import { EventDecoder, formatIPv6 } from "../core/event.ts";
import { EVENT_LAYOUT } from "../core/tcptracer_abi.ts";
import { assertEquals } from "./helpers/assert.ts";

interface RawEvent {
  type: number;
  family: number;
  saddr: number[];
  daddr: number[];
  sport: number;
  dport: number;
  pid?: number;
  comm?: string;
  error?: number;
  timestamp?: bigint;
}

function encode(raw: RawEvent): DataView {
  const L = EVENT_LAYOUT;
  // Placed at an offset inside a larger buffer, as in the ring buffer.
  const buffer = new Uint8Array(16 + L.size);
  const view = new DataView(buffer.buffer, 0);
  const at = 16;
  view.setBigUint64(at + L.timestamp_ns, raw.timestamp ?? 1_000n, true);
  view.setBigUint64(at + L.cgroup_id, 77n, true);
  view.setUint32(at + L.mntns_id, 4026531840, true);
  view.setUint32(at + L.netns_id, 4026531992, true);
  view.setUint32(at + L.pid, raw.pid ?? 1234, true);
  view.setUint32(at + L.tid, 1235, true);
  view.setUint32(at + L.uid, 1000, true);
  view.setUint32(at + L.gid, 100, true);
  buffer.set(raw.saddr, at + L.saddr);
  buffer.set(raw.daddr, at + L.daddr);
  view.setUint16(at + L.sport, raw.sport, true);
  view.setUint16(at + L.dport, raw.dport, true);
  view.setUint16(at + L.family, raw.family, true);
  view.setUint16(at + L.error, raw.error ?? 0, true);
  view.setUint8(at + L.type, raw.type);
  view.setBigUint64(at + L.mntns_seq, 0x1_0000_0007n, true);
  buffer.set(new TextEncoder().encode(raw.comm ?? "wget"), at + L.comm);
  return view;
}

const mapped = (a: number, b: number, c: number, d: number) => [
  ...new Array(10).fill(0),
  0xff,
  0xff,
  a,
  b,
  c,
  d,
];

Deno.test("decode: an IPv4 connect with every field", () => {
  const decoder = new EventDecoder(1_700_000_000_000_000_000n);
  const event = decoder.decode(
    encode({
      type: 1,
      family: 2,
      saddr: [172, 17, 0, 3],
      daddr: [188, 114, 97, 3],
      sport: 34878,
      dport: 443,
      timestamp: 5n,
    }),
    16,
  );
  assertEquals(event, {
    type: "C",
    timeSec: 1_700_000_000,
    timeNsec: 5,
    pid: 1234,
    tid: 1235,
    uid: 1000,
    gid: 100,
    comm: "wget",
    mntns: 4026531840,
    netns: 4026531992,
    cgroupId: 77,
    mntnsSeq: 0x1_0000_0007,
    ipversion: 4,
    saddr: "172.17.0.3",
    sport: 34878,
    daddr: "188.114.97.3",
    dport: 443,
  });
});

Deno.test("decode: kinds A, X, U and unknown codes", () => {
  const decoder = new EventDecoder(0n);
  const base = { family: 2, saddr: [127, 0, 0, 1], daddr: [127, 0, 0, 1], sport: 1, dport: 2 };
  assertEquals(decoder.decode(encode({ ...base, type: 2 }), 16).type, "A");
  assertEquals(decoder.decode(encode({ ...base, type: 3 }), 16).type, "X");
  assertEquals(decoder.decode(encode({ ...base, type: 4 }), 16).type, "U");
  assertEquals(decoder.decode(encode({ ...base, type: 99 }), 16).type, "U");
});

Deno.test("decode: a failed connect carries the errno name", () => {
  const event = new EventDecoder(0n).decode(
    encode({
      type: 1,
      family: 2,
      saddr: [10, 0, 0, 1],
      daddr: [10, 0, 0, 2],
      sport: 40000,
      dport: 80,
      error: 111,
    }),
    16,
  );
  assertEquals(event.error, "ECONNREFUSED");
  const timedOut = new EventDecoder(0n).decode(
    encode({ type: 1, family: 2, saddr: [], daddr: [], sport: 1, dport: 1, error: 110 }),
    16,
  );
  assertEquals(timedOut.error, "ETIMEDOUT");
});

Deno.test("decode: IPv6 addresses in RFC 5952 form", () => {
  const loopback = [...new Array(15).fill(0), 1];
  const doc = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42];
  const event = new EventDecoder(0n).decode(
    encode({ type: 2, family: 10, saddr: loopback, daddr: doc, sport: 8080, dport: 51000 }),
    16,
  );
  assertEquals(
    [event.ipversion, event.saddr, event.daddr, event.sport, event.dport],
    [6, "::1", "2001:db8::42", 8080, 51000],
  );
});

Deno.test("decode: v4-mapped IPv6 is reported as IP 4 with plain addresses", () => {
  const event = new EventDecoder(0n).decode(
    encode({
      type: 2,
      family: 10,
      saddr: mapped(127, 0, 0, 1),
      daddr: mapped(192, 168, 1, 20),
      sport: 80,
      dport: 50000,
    }),
    16,
  );
  assertEquals([event.ipversion, event.saddr, event.daddr], [4, "127.0.0.1", "192.168.1.20"]);
  // Not yet bound to a source (a failed connect): still IPv4.
  const unbound = new EventDecoder(0n).decode(
    encode({
      type: 1,
      family: 10,
      saddr: new Array(16).fill(0),
      daddr: mapped(10, 1, 2, 3),
      sport: 0,
      dport: 80,
    }),
    16,
  );
  assertEquals([unbound.ipversion, unbound.saddr, unbound.daddr], [4, "0.0.0.0", "10.1.2.3"]);
  // A mapped peer with a real IPv6 source is not rewritten.
  const mixed = new EventDecoder(0n).decode(
    encode({
      type: 1,
      family: 10,
      saddr: [...new Array(15).fill(0), 1],
      daddr: mapped(10, 1, 2, 3),
      sport: 1,
      dport: 80,
    }),
    16,
  );
  assertEquals([mixed.ipversion, mixed.daddr], [6, "::ffff:a01:203"]);
});

Deno.test("decode: a 15-character command name is kept whole", () => {
  const event = new EventDecoder(0n).decode(
    encode({
      type: 1,
      family: 2,
      saddr: [1, 2, 3, 4],
      daddr: [5, 6, 7, 8],
      sport: 1,
      dport: 2,
      comm: "systemd-resolve",
    }),
    16,
  );
  assertEquals(event.comm, "systemd-resolve");
});

Deno.test("decode: command names are UTF-8; a cut or invalid sequence becomes U+FFFD; cached per process", () => {
  const decoder = new EventDecoder(0n);
  const comm = (bytes: number[], pid = 1234) => {
    const view = encode({
      type: 1,
      family: 2,
      saddr: [1, 2, 3, 4],
      daddr: [5, 6, 7, 8],
      sport: 1,
      dport: 2,
      comm: "",
      pid,
    });
    new Uint8Array(view.buffer).set(
      [...bytes, ...new Array(16 - bytes.length).fill(0)],
      16 + EVENT_LAYOUT.comm,
    );
    return decoder.decode(view, 16).comm;
  };
  const utf8 = (text: string) => [...new TextEncoder().encode(text)];
  assertEquals(comm(utf8("ééé")), "ééé");
  assertEquals(comm(utf8("nöde-ü€")), "nöde-ü€");
  // The kernel keeps 15 bytes: "é" (C3 A9) cut after its first byte.
  assertEquals(comm(utf8("tg-cut-abcdefgé").slice(0, 15)), "tg-cut-abcdefg\ufffd");
  // "€" (E2 82 AC) cut after two bytes: one replacement for the cut sequence.
  assertEquals(comm(utf8("tg-cut-abcdef€").slice(0, 15)), "tg-cut-abcdef\ufffd");
  assertEquals(comm([0x61, 0xff, 0x62]), "a\ufffdb");
  // All 16 bytes without a NUL (never from the kernel): 16 bytes at most.
  assertEquals(comm(utf8("ééééééééé").slice(0, 16)), "éééééééé");
  // Same process, new name: decoded anew; back to ASCII.
  assertEquals(comm(utf8("curl")), "curl");
  assertEquals(comm(utf8("ééé"), 99), "ééé");
});

Deno.test("formatIPv6: compression rules of RFC 5952", () => {
  const bytes = (groups: number[]) => new Uint8Array(groups.flatMap((g) => [g >> 8, g & 0xff]));
  assertEquals(formatIPv6(bytes([0, 0, 0, 0, 0, 0, 0, 0])), "::");
  assertEquals(formatIPv6(bytes([0, 0, 0, 0, 0, 0, 0, 1])), "::1");
  assertEquals(formatIPv6(bytes([1, 0, 0, 0, 0, 0, 0, 0])), "1::");
  // One zero group is not compressed.
  assertEquals(
    formatIPv6(bytes([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1])),
    "2001:db8:0:1:1:1:1:1",
  );
  // The longest run wins; on a tie, the first.
  assertEquals(formatIPv6(bytes([0x2001, 0xdb8, 0, 0, 1, 0, 0, 0])), "2001:db8:0:0:1::");
  assertEquals(formatIPv6(bytes([0x2001, 0, 0, 1, 0, 0, 1, 1])), "2001::1:0:0:1:1");
  assertEquals(
    formatIPv6(bytes([0xfe80, 0, 0, 0, 0xabcd, 0xef, 0x12, 0x3400])),
    "fe80::abcd:ef:12:3400",
  );
});

Deno.test("decode into a reused event: every field overwritten, error cleared", () => {
  const decoder = new EventDecoder(0n);
  const records = [
    encode({
      type: 1,
      family: 2,
      saddr: [10, 0, 0, 1],
      daddr: [10, 0, 0, 2],
      sport: 1,
      dport: 80,
      error: 111,
    }),
    encode({
      type: 3,
      family: 10,
      saddr: mapped(1, 2, 3, 4),
      daddr: mapped(5, 6, 7, 8),
      sport: 2,
      dport: 3,
      comm: "curl",
    }),
    encode({
      type: 2,
      family: 2,
      saddr: [127, 0, 0, 1],
      daddr: [127, 0, 0, 1],
      sport: 4,
      dport: 5,
      timestamp: 7_000_000_001n,
    }),
  ];
  const shared = decoder.decode(records[0], 16);
  for (const record of [...records, ...records]) {
    const fresh = new EventDecoder(0n).decode(record, 16);
    const reused = decoder.decode(record, 16, shared);
    assertEquals(reused === shared, true);
    assertEquals({ ...reused, error: reused.error ?? undefined }, { ...fresh, error: fresh.error });
  }
});
