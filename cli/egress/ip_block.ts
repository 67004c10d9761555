/**
 * IP addresses and CIDR blocks of rules (IPv4 and IPv6), read strictly and
 * matched against the addresses of events (on ipaddr.js).
 *
 * @module
 */

import ipaddr from "ipaddr.js";

/** An address block: `prefix` leading bits of `address` (a whole address: 32 or 128). */
export interface IpBlock {
  version: 4 | 6;
  /** The network address, in canonical form (RFC 5952 for IPv6). */
  address: string;
  prefix: number;
}

/**
 * Reads an address or a CIDR block: `10.0.0.1`, `10.0.0.0/8`, `2001:db8::1`,
 * `2001:db8::/32`. IPv4 only as four decimal numbers; no IPv6 zone; no
 * bits set past the prefix (`10.0.0.1/8` is refused, as a likely mistake).
 * An IPv4-mapped IPv6 address or block (`::ffff:10.0.0.1`) is read as IPv4,
 * as events report such connections. Throws an Error saying what is wrong.
 *
 * @example
 * ```ts
 * import { parseIpBlock } from "./ip_block.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseIpBlock("10.0.0.0/8"), { version: 4, address: "10.0.0.0", prefix: 8 });
 * assert.deepEqual(parseIpBlock("2001:DB8:0::1"), { version: 6, address: "2001:db8::1", prefix: 128 });
 * assert.deepEqual(parseIpBlock("::ffff:10.1.2.3"), { version: 4, address: "10.1.2.3", prefix: 32 });
 * assert.throws(() => parseIpBlock("10.0.0.1/8"), /bits set past the prefix: 10.0.0.0\/8/);
 * ```
 */
export function parseIpBlock(text: string): IpBlock {
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  let address: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(addressText)) {
    address = ipaddr.IPv4.parse(addressText);
  } else if (!addressText.includes("%") && ipaddr.IPv6.isValid(addressText)) {
    address = ipaddr.IPv6.parse(addressText);
  } else {
    throw new Error(`"${addressText}" is not an IPv4 or IPv6 address`);
  }
  const bits = address.kind() === "ipv4" ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    prefix = Number(prefixText);
    if (!/^\d{1,3}$/.test(prefixText) || prefix > bits) {
      throw new Error(`invalid prefix length "/${prefixText}" (0-${bits})`);
    }
  }
  if (address instanceof ipaddr.IPv6 && address.isIPv4MappedAddress() && prefix >= 96) {
    address = address.toIPv4Address();
    prefix -= 96;
  }
  const version = address.kind() === "ipv4" ? 4 : 6;
  const network = networkOf(address, prefix);
  if (network.toString() !== address.toString()) {
    throw new Error(
      `"${text}" has bits set past the prefix: ${network.toString()}/${prefix} is the block`,
    );
  }
  return { version, address: network.toString(), prefix };
}

function networkOf(address: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): ipaddr.IPv4 | ipaddr.IPv6 {
  const bytes = address.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] &= (0xff00 >> keep) & 0xff;
  }
  return ipaddr.fromByteArray(bytes);
}

// Parsed event addresses: the same few recur, and parsing is most of a match.
const parsed = new Map<string, ipaddr.IPv4 | ipaddr.IPv6 | null>();

function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  let address = parsed.get(text);
  if (address === undefined) {
    try {
      address = ipaddr.process(text);
    } catch {
      address = null;
    }
    if (parsed.size >= 4096) parsed.clear();
    parsed.set(text, address);
  }
  return address;
}

/**
 * Whether the address of an event (`10.1.2.3`, `2001:db8::1`) is in `block`.
 *
 * @example
 * ```ts
 * import { ipInBlock, parseIpBlock } from "./ip_block.ts";
 * import assert from "node:assert/strict";
 * assert.ok(ipInBlock("10.1.2.3", parseIpBlock("10.0.0.0/8")));
 * assert.ok(!ipInBlock("11.1.2.3", parseIpBlock("10.0.0.0/8")));
 * assert.ok(ipInBlock("2001:db8:0:0::5", parseIpBlock("2001:db8::/32")));
 * assert.ok(!ipInBlock("10.1.2.3", parseIpBlock("::/0")));
 * ```
 */
export function ipInBlock(address: string, block: IpBlock): boolean {
  const ip = parseAddress(address);
  if (ip === null) return false;
  const version = ip.kind() === "ipv4" ? 4 : 6;
  if (version !== block.version) return false;
  if (block.prefix === 0) return true;
  return ip.match(parseAddress(block.address)!, block.prefix);
}

/**
 * The block as a rule writes it: the address alone for a single address,
 * else `address/prefix`.
 */
export function formatIpBlock(block: IpBlock): string {
  return block.prefix === (block.version === 4 ? 32 : 128)
    ? block.address
    : `${block.address}/${block.prefix}`;
}

/** The block in CIDR notation, always with its prefix (`10.0.0.1/32`): for NetworkPolicy. */
export function cidrOf(block: IpBlock): string {
  return `${block.address}/${block.prefix}`;
}
