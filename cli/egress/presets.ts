/**
 * The named address sets a rule can use (`--allow @loopback`): nothing is
 * allowed by default, so these are conveniences the user names, each
 * listed in README.md.
 *
 * @module
 */

import { type IpBlock, parseIpBlock } from "./ip_block.ts";

/** Preset names (without the `@`) and their blocks. */
export const PRESETS: Readonly<Record<string, readonly IpBlock[]>> = Object.freeze({
  // The loopback interface: local services, test servers.
  loopback: blocks("127.0.0.0/8", "::1"),
  // RFC 1918 and unique local IPv6 (RFC 4193): a cluster's or office's own networks.
  private: blocks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
  // Link-local (RFC 3927, RFC 4291): cloud metadata services, node-local DNS caches.
  "link-local": blocks("169.254.0.0/16", "fe80::/10"),
});

function blocks(...texts: string[]): readonly IpBlock[] {
  return Object.freeze(texts.map(parseIpBlock));
}

/**
 * The blocks of preset `name` (without the `@`); throws an Error naming the
 * presets there are.
 *
 * @example
 * ```ts
 * import { presetBlocks } from "./presets.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(presetBlocks("loopback").map((b) => b.address), ["127.0.0.0", "::1"]);
 * assert.throws(() => presetBlocks("lan"), /unknown preset @lan \(presets: @loopback, @private, @link-local\)/);
 * ```
 */
export function presetBlocks(name: string): readonly IpBlock[] {
  const found = Object.hasOwn(PRESETS, name) ? PRESETS[name] : undefined;
  if (!found) {
    const names = Object.keys(PRESETS).map((p) => `@${p}`).join(", ");
    throw new Error(`unknown preset @${name} (presets: ${names})`);
  }
  return found;
}
