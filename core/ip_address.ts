/**
 * IP addresses written one way: the text TcpEvent's `saddr`/`daddr` carry
 * (dotted quad; RFC 5952 for IPv6; an IPv4-mapped IPv6 address as its
 * IPv4 address, as the decoder reports a dual-stack socket's IPv4 peer),
 * so that an address from a DNS answer or a hosts file is found by the
 * text of an event's address.
 *
 * @module
 */

import { formatIPv6 } from "./event.ts";

/**
 * The canonical text of an IP address, or undefined if `text` is not one.
 * An IPv6 zone (`%eth0`) is dropped.
 *
 * @example
 * ```ts
 * import { canonicalIp } from "./ip_address.ts";
 * import assert from "node:assert/strict";
 * assert.equal(canonicalIp("fd00:0:0:0:0:0:0:1"), "fd00::1");
 * assert.equal(canonicalIp("::ffff:10.0.0.1"), "10.0.0.1");
 * assert.equal(canonicalIp("FE80::1%eth0"), "fe80::1");
 * assert.equal(canonicalIp("10.0.0.256"), undefined);
 * ```
 */
export function canonicalIp(text: string): string | undefined {
  const v4 = parseIPv4(text);
  if (v4) return v4.join(".");
  const v6 = parseIPv6(text.replace(/%[^%]*$/, ""));
  if (!v6) return undefined;
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) {
    return Array.from(v6.subarray(12)).join(".");
  }
  return formatIPv6(v6);
}

/** The 4 bytes of a dotted quad (decimal, no leading zeros), or undefined. */
function parseIPv4(text: string): number[] | undefined {
  if (!/^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(text)) return undefined;
  const bytes = text.split(".").map(Number);
  return bytes.every((b) => b <= 255) ? bytes : undefined;
}

/** The 16 bytes of an IPv6 address (an IPv4 tail allowed), or undefined. */
function parseIPv6(text: string): Uint8Array | undefined {
  if (text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === "") return [];
    const result: number[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIPv4(part);
        if (!v4) return undefined;
        result.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
        result.push(parseInt(part, 16));
      } else {
        return undefined;
      }
    }
    return result;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  // An IPv4 tail is allowed only at the very end.
  if (halves.length === 2 && halves[0].includes(".")) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}
