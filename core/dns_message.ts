/**
 * The addresses a DNS answer gives names to, read from the untrusted bytes
 * of a message seen on its way to a process: decoded by `dns-packet`, A and
 * AAAA records reached from each question's name through CNAME records,
 * every count and length bounded, and nothing thrown whatever the bytes.
 *
 * @module
 */

// @ts-types="@types/dns-packet"
import * as dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { canonicalIp } from "./ip_address.ts";

/** An address an answer gave, and the name the process asked for it. */
export interface DnsAddressRecord {
  /** The address, as TcpEvent's `daddr` writes it. */
  address: string;
  /** The question's name: lower case, no trailing dot (see {@link presentName}). */
  name: string;
  /** The names from `name` to the address record's owner, through CNAMEs; `name` first. */
  chain: string[];
  /** Seconds the answer may be kept: the least TTL along the chain. */
  ttl: number;
}

/** How many CNAMEs a chain may follow (resolvers stop at 8 to 16). */
export const MAX_CHAIN = 16;
/** At most this many addresses are taken from one message. */
export const MAX_ADDRESSES = 256;

/**
 * The addresses of a DNS answer message: for each question of class IN,
 * the A and AAAA records of the answer section that its name leads to,
 * directly or through CNAMEs. Anything but a well-formed NOERROR response
 * to a standard query gives none.
 *
 * @example
 * ```ts
 * import { parseDnsMessage } from "./dns_message.ts";
 * import assert from "node:assert/strict";
 * // A response: cname.test CNAME target.test, target.test A 10.0.0.7.
 * const message = Uint8Array.from([
 *   0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
 *   5, ..."cname".split("").map((c) => c.charCodeAt(0)), 4, 116, 101, 115, 116, 0, 0, 1, 0, 1,
 *   0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 9, 6, 116, 97, 114, 103, 101, 116, 0xc0, 18,
 *   0xc0, 40, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 7,
 * ]);
 * assert.deepEqual(parseDnsMessage(message), [
 *   { address: "10.0.0.7", name: "cname.test", chain: ["cname.test", "target.test"], ttl: 30 },
 * ]);
 * assert.deepEqual(parseDnsMessage(message.subarray(0, 50)), []); // cut: nothing
 * ```
 */
export function parseDnsMessage(message: Uint8Array): DnsAddressRecord[] {
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
  } catch {
    return [];
  }
  // flags without QR: OPCODE in bits 11-14, RCODE in bits 0-3.
  const flags = packet.flags ?? 0;
  if (packet.type !== "response" || (flags >> 11 & 0xf) !== 0 || (flags & 0xf) !== 0) return [];
  // Owner name -> its CNAME target, and its addresses.
  const cnames = new Map<string, { target: string; ttl: number }>();
  const addresses = new Map<string, { address: string; ttl: number }[]>();
  for (const answer of packet.answers ?? []) {
    if (answer.type === "OPT" || answer.class !== "IN") continue;
    if (answer.type === "CNAME") {
      const owner = presentName(answer.name);
      if (!cnames.has(owner)) {
        cnames.set(owner, { target: presentName(answer.data), ttl: answer.ttl ?? 0 });
      }
    } else if (answer.type === "A" || answer.type === "AAAA") {
      const address = canonicalIp(answer.data);
      if (address === undefined) continue;
      const owner = presentName(answer.name);
      const list = addresses.get(owner) ?? [];
      list.push({ address, ttl: answer.ttl ?? 0 });
      addresses.set(owner, list);
    }
  }
  const records: DnsAddressRecord[] = [];
  for (const question of packet.questions ?? []) {
    if (question.class !== "IN") continue;
    const name = presentName(question.name);
    const chain = [name];
    let ttl = Infinity;
    let owner = name;
    for (let hop = cnames.get(owner); hop && chain.length <= MAX_CHAIN; hop = cnames.get(owner)) {
      if (chain.includes(hop.target)) break; // a loop
      ttl = Math.min(ttl, hop.ttl);
      owner = hop.target;
      chain.push(owner);
    }
    for (const { address, ttl: addressTtl } of addresses.get(owner) ?? []) {
      if (records.length >= MAX_ADDRESSES) return records;
      records.push({ address, name, chain: [...chain], ttl: Math.min(ttl, addressTtl) });
    }
  }
  return records;
}

/**
 * The addresses of the DNS messages in a TCP segment's data: each message
 * follows its 2-byte length. Only whole messages from the segment's start
 * are read: one split across segments is not.
 *
 * @example
 * ```ts
 * import { parseDnsOverTcp } from "./dns_message.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseDnsOverTcp(Uint8Array.from([0, 40, 1, 2])), []); // 40 bytes announced, 2 there
 * ```
 */
export function parseDnsOverTcp(data: Uint8Array): DnsAddressRecord[] {
  const records: DnsAddressRecord[] = [];
  let offset = 0;
  while (offset + 2 <= data.length && records.length < MAX_ADDRESSES) {
    const length = (data[offset] << 8) | data[offset + 1];
    const end = offset + 2 + length;
    if (length === 0 || end > data.length) break;
    records.push(...parseDnsMessage(data.subarray(offset + 2, end)));
    offset = end;
  }
  return records.slice(0, MAX_ADDRESSES);
}

/**
 * A name as tcpgadget shows and matches it: ASCII lower case, no trailing
 * dot, and every character that is not printable ASCII (or is a
 * backslash) written as `\DDD` for each of its UTF-8 bytes, as DNS master
 * files do: a name from the wire never carries a control character.
 *
 * @example
 * ```ts
 * import { presentName } from "./dns_message.ts";
 * import assert from "node:assert/strict";
 * assert.equal(presentName("WWW.Example.COM."), "www.example.com");
 * assert.equal(presentName("a\x1b[2Jb c.test"), "a\\027[2jb\\032c.test");
 * ```
 */
export function presentName(name: string): string {
  let text = name.endsWith(".") && name !== "." ? name.slice(0, -1) : name;
  text = text.replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (/^[\x21-\x5b\x5d-\x7e]*$/.test(text)) return text;
  let escaped = "";
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (code >= 0x21 && code <= 0x7e && char !== "\\") {
      escaped += char;
      continue;
    }
    for (const byte of new TextEncoder().encode(char)) {
      escaped += `\\${byte.toString().padStart(3, "0")}`;
    }
  }
  return escaped;
}
