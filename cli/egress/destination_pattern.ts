/**
 * The DEST of a rule: a host name, a wildcard, an address or block, a
 * preset, or `*`; how it is read, written, and matched against a
 * connection's address and names.
 *
 * @module
 */

import { formatIpBlock, type IpBlock, ipInBlock, parseIpBlock } from "./ip_block.ts";
import { presetBlocks } from "./presets.ts";

/** What a rule's DEST matches. */
export type DestinationPattern =
  /** `*`: every destination, named or not. */
  | { kind: "any" }
  /** `registry.npmjs.org`: connections whose destination was known by exactly this name. */
  | { kind: "host"; name: string }
  /** `*.github.com` (suffix `github.com`): names of one label or more under it, not the apex. */
  | { kind: "wildcard"; suffix: string }
  /** `10.0.0.0/8`, `2001:db8::1`: destination addresses in the block, named or not. */
  | { kind: "block"; block: IpBlock }
  /** `@loopback`: destination addresses in any of the preset's blocks. */
  | { kind: "preset"; name: string; blocks: readonly IpBlock[] };

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * Whether `name` is a host name a rule can hold: labels of letters, digits,
 * `-` and `_` (not at either end), at most 63 bytes each and 253 in all,
 * the last one not all digits (that would be an address).
 *
 * @example
 * ```ts
 * import { isHostName } from "./destination_pattern.ts";
 * import assert from "node:assert/strict";
 * assert.ok(isHostName("registry.npmjs.org"));
 * assert.ok(isHostName("_sip._tcp.example.com"));
 * assert.ok(!isHostName("10.0.0"));
 * assert.ok(!isHostName("a b.example"));
 * ```
 */
export function isHostName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  return labels.every((label) => LABEL.test(label)) && !/^\d+$/.test(labels[labels.length - 1]);
}

/**
 * Reads a DEST (case-insensitive; a host name's trailing dot is dropped).
 * Throws an Error saying what is wrong.
 *
 * @example
 * ```ts
 * import { parseDestination } from "./destination_pattern.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseDestination("Registry.NPMjs.org."), { kind: "host", name: "registry.npmjs.org" });
 * assert.deepEqual(parseDestination("*.github.com"), { kind: "wildcard", suffix: "github.com" });
 * assert.equal(parseDestination("10.0.0.0/8").kind, "block");
 * assert.throws(() => parseDestination("api.*.com"), /a wildcard is only allowed as the whole first label/);
 * ```
 */
export function parseDestination(text: string): DestinationPattern {
  if (text === "") throw new Error("empty destination");
  if (text === "*") return { kind: "any" };
  if (text.startsWith("@")) {
    const name = text.slice(1);
    return { kind: "preset", name, blocks: presetBlocks(name) };
  }
  // Ending in a number: meant as an address (host names never do).
  if (/(^|\.)\d+\.?$/.test(text) || text.includes(":") || text.includes("/")) {
    return { kind: "block", block: parseIpBlock(text) };
  }
  let name = text.toLowerCase();
  if (name.endsWith(".") && name !== ".") name = name.slice(0, -1);
  if (name.includes("*")) {
    if (!name.startsWith("*.") || name.slice(2).includes("*")) {
      throw new Error(
        `invalid wildcard "${text}": a wildcard is only allowed as the whole first label (*.example.com)`,
      );
    }
    const suffix = name.slice(2);
    if (!isHostName(suffix)) throw new Error(`invalid host name "${text}"`);
    return { kind: "wildcard", suffix };
  }
  if (!isHostName(name)) {
    throw new Error(
      `invalid destination "${text}": not a host name (letters, digits, '-', '_' and dots), a wildcard, an address or a CIDR block`,
    );
  }
  return { kind: "host", name };
}

/**
 * The DEST as a rule writes it.
 *
 * @example
 * ```ts
 * import { formatDestination, parseDestination } from "./destination_pattern.ts";
 * import assert from "node:assert/strict";
 * for (const text of ["*", "*.github.com", "db.internal", "10.0.0.0/8", "2001:db8::/32", "@loopback"]) {
 *   assert.equal(formatDestination(parseDestination(text)), text);
 * }
 * ```
 */
export function formatDestination(pattern: DestinationPattern): string {
  switch (pattern.kind) {
    case "any":
      return "*";
    case "host":
      return pattern.name;
    case "wildcard":
      return `*.${pattern.suffix}`;
    case "block":
      return formatIpBlock(pattern.block);
    case "preset":
      return `@${pattern.name}`;
  }
}

/** Whether the pattern is of names (host, wildcard), which a connection without a name never matches. */
export function isNamePattern(pattern: DestinationPattern): boolean {
  return pattern.kind === "host" || pattern.kind === "wildcard";
}

/**
 * Whether a connection to `address`, known by `names` (none when its name is
 * unknown), matches the pattern. Name patterns look at the names only,
 * address patterns at the address only.
 *
 * @example
 * ```ts
 * import { destinationMatches, parseDestination } from "./destination_pattern.ts";
 * import assert from "node:assert/strict";
 * const github = parseDestination("*.github.com");
 * assert.ok(destinationMatches(github, "140.82.112.5", ["api.github.com"]));
 * assert.ok(destinationMatches(github, "140.82.112.5", ["a.b.github.com"]));
 * assert.ok(!destinationMatches(github, "140.82.112.5", ["github.com"]));
 * assert.ok(!destinationMatches(github, "140.82.112.5", ["evilgithub.com"]));
 * assert.ok(!destinationMatches(parseDestination("140.82.112.5"), "140.82.112.6", ["x"]));
 * assert.ok(destinationMatches(parseDestination("@loopback"), "::1", []));
 * ```
 */
export function destinationMatches(
  pattern: DestinationPattern,
  address: string,
  names: readonly string[],
): boolean {
  switch (pattern.kind) {
    case "any":
      return true;
    case "host":
      return names.includes(pattern.name);
    case "wildcard": {
      const tail = `.${pattern.suffix}`;
      return names.some((name) => name.length > tail.length && name.endsWith(tail));
    }
    case "block":
      return ipInBlock(address, pattern.block);
    case "preset":
      return pattern.blocks.some((block) => ipInBlock(address, block));
  }
}
