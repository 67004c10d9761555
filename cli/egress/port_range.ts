/**
 * The PORTS of a rule: one port, a range `8000-8999`, or `*` (every port).
 *
 * @module
 */

/** Destination ports from `first` to `last`, inclusive; 1-65535 is every port. */
export interface PortRange {
  first: number;
  last: number;
}

/** Every port: what `*`, and a rule without PORTS, mean. */
export const ANY_PORT: PortRange = Object.freeze({ first: 1, last: 65535 });

/**
 * Reads PORTS; throws an Error whose message says what is wrong.
 *
 * @example
 * ```ts
 * import { parsePorts } from "./port_range.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parsePorts("443"), { first: 443, last: 443 });
 * assert.deepEqual(parsePorts("8000-8999"), { first: 8000, last: 8999 });
 * assert.deepEqual(parsePorts("*"), { first: 1, last: 65535 });
 * assert.throws(() => parsePorts("0"), /port 0 is out of range/);
 * ```
 */
export function parsePorts(text: string): PortRange {
  if (text === "*") return ANY_PORT;
  const match = text.match(/^(\d+)(?:-(\d+))?$/);
  if (!match) {
    throw new Error(`invalid ports "${text}": expected a port, a range like 8000-8999, or *`);
  }
  const first = port(match[1]);
  const last = match[2] === undefined ? first : port(match[2]);
  if (last < first) throw new Error(`invalid port range "${text}": ${last} is below ${first}`);
  return { first, last };
}

function port(digits: string): number {
  const value = Number(digits);
  if (!(value >= 1 && value <= 65535) || digits.length > 5) {
    throw new Error(`port ${digits} is out of range (1-65535)`);
  }
  return value;
}

/** Whether `port` is in `range`. */
export function portInRange(port: number, range: PortRange): boolean {
  return port >= range.first && port <= range.last;
}

/**
 * PORTS as a rule writes it: `443`, `8000-8999`, or `*`.
 *
 * @example
 * ```ts
 * import { formatPorts, parsePorts } from "./port_range.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatPorts(parsePorts("80-81")), "80-81");
 * assert.equal(formatPorts(parsePorts("*")), "*");
 * ```
 */
export function formatPorts(range: PortRange): string {
  if (isAnyPort(range)) return "*";
  return range.first === range.last ? `${range.first}` : `${range.first}-${range.last}`;
}

/** Whether `range` is every port. */
export function isAnyPort(range: PortRange): boolean {
  return range.first === 1 && range.last === 65535;
}
