/**
 * One rule of an egress policy: allow, deny or expect `DEST[:PORTS]`, for
 * whom (its scope), and where it was written (a flag, or a file's line).
 *
 * RULE syntax: `DEST` or `DEST:PORTS`; an IPv6 address or block takes
 * PORTS only in brackets (`[2001:db8::1]:443`, `[2001:db8::/32]:443`);
 * without brackets an IPv6 address or block means every port.
 *
 * @module
 */

import { UsageError } from "../../core/errors.ts";
import {
  destinationMatches,
  type DestinationPattern,
  formatDestination,
  parseDestination,
} from "./destination_pattern.ts";
import {
  ANY_PORT,
  formatPorts,
  isAnyPort,
  parsePorts,
  portInRange,
  type PortRange,
} from "./port_range.ts";
import { describeScope, inScope, type RuleScope } from "./rule_scope.ts";
import { printable } from "../../core/printable.ts";
import type { Workload } from "./workload.ts";
import type { DestinationName } from "../../core/destination_name.ts";

/** What a rule does: allow, deny, or expect (allow, and must be reached at least once). */
export type RuleAction = "allow" | "deny" | "expect";

/** Where a rule was written. */
export type RuleOrigin =
  | { kind: "flag" }
  | { kind: "file"; file: string; line: number };

/** A rule, read. */
export interface Rule {
  action: RuleAction;
  destination: DestinationPattern;
  ports: PortRange;
  scope: RuleScope;
  origin: RuleOrigin;
}

/** A connection attempt, as rules see it. */
export interface Attempt {
  /** Destination address and port. */
  address: string;
  port: number;
  /** The name the process knew the destination by, if known. */
  name?: DestinationName;
  workload: Workload;
}

/**
 * Reads `DEST[:PORTS]`; throws an Error saying what is wrong (the caller
 * says where: see {@link ruleError}).
 *
 * @example
 * ```ts
 * import { parseRule, ruleText } from "./rule.ts";
 * import assert from "node:assert/strict";
 * const rule = parseRule("allow", "[2001:DB8::/32]:443");
 * assert.equal(ruleText(rule), "[2001:db8::/32]:443");
 * assert.equal(ruleText(parseRule("allow", "2001:db8::1")), "2001:db8::1");
 * assert.equal(ruleText(parseRule("deny", "*.Example.com:8000-8999")), "*.example.com:8000-8999");
 * assert.equal(ruleText(parseRule("allow", "@loopback:*")), "@loopback");
 * assert.throws(() => parseRule("allow", "[example.com]:443"), /only an IP address or CIDR block/);
 * ```
 */
export function parseRule(
  action: RuleAction,
  text: string,
  scope: RuleScope = {},
  origin: RuleOrigin = { kind: "flag" },
): Rule {
  let destText = text;
  let portsText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) throw new Error(`missing "]" after the bracketed address`);
    destText = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) throw new Error(`expected ":PORTS" after "]", got "${rest}"`);
      portsText = rest.slice(1);
    }
  } else {
    const colon = text.indexOf(":");
    // More than one colon, no brackets: an IPv6 address or block, every port.
    if (colon >= 0 && text.indexOf(":", colon + 1) < 0) {
      destText = text.slice(0, colon);
      portsText = text.slice(colon + 1);
    }
  }
  const destination = parseDestination(destText);
  if (text.startsWith("[") && destination.kind !== "block") {
    throw new Error("brackets hold only an IP address or CIDR block ([2001:db8::1]:443)");
  }
  const ports = portsText === undefined ? ANY_PORT : parsePorts(portsText);
  return { action, destination, ports, scope, origin };
}

/**
 * The rule's `DEST[:PORTS]`, in canonical form (what {@link parseRule}
 * reads back as the same rule).
 */
export function ruleText(rule: Pick<Rule, "destination" | "ports">): string {
  const dest = formatDestination(rule.destination);
  if (isAnyPort(rule.ports)) return dest;
  const bracketed = rule.destination.kind === "block" && rule.destination.block.version === 6;
  return `${bracketed ? `[${dest}]` : dest}:${formatPorts(rule.ports)}`;
}

/**
 * The rule as reports name it: `allow *.github.com:443`, and its scope.
 *
 * @example
 * ```ts
 * import { describeRule, parseRule } from "./rule.ts";
 * import assert from "node:assert/strict";
 * assert.equal(describeRule(parseRule("allow", "db:5432", { command: "psql" })), "allow db:5432 (command psql)");
 * ```
 */
export function describeRule(rule: Rule): string {
  const scope = describeScope(rule.scope);
  return `${rule.action} ${ruleText(rule)}${scope ? ` (${scope})` : ""}`;
}

/** Where the rule was written: `--allow`, or `policy.yaml:7`. */
export function describeOrigin(rule: Pick<Rule, "action" | "origin">): string {
  return rule.origin.kind === "flag"
    ? `--${rule.action}`
    : `${rule.origin.file}:${rule.origin.line}`;
}

/**
 * The usage error (exit status 2) for a mistake in rule `text` written at
 * `origin`: one line naming the flag, or the file and line, and the rule.
 *
 * @example
 * ```ts
 * import { ruleError } from "./rule.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   ruleError({ kind: "file", file: "p.yaml", line: 7 }, "allow", "x:0", "port 0 is out of range (1-65535)").message,
 *   'p.yaml:7: rule "allow: x:0": port 0 is out of range (1-65535)',
 * );
 * assert.equal(ruleError({ kind: "flag" }, "deny", "x:y", "bad").message, '--deny "x:y": bad');
 * ```
 */
export function ruleError(
  origin: RuleOrigin,
  action: RuleAction,
  text: string,
  message: string,
): UsageError {
  // The messages quote the rule: escaped, so that none can move the cursor.
  const shown = JSON.stringify(text);
  const why = printable(message);
  return new UsageError(
    origin.kind === "flag"
      ? `--${action} ${shown}: ${why}`
      : `${origin.file}:${origin.line}: rule "${action}: ${shown.slice(1, -1)}": ${why}`,
  );
}

/**
 * Whether the rule matches the attempt: in scope, port in range, and the
 * destination matching. A name rule never matches an attempt without a
 * name. Allow and expect rules look at the name the process asked for;
 * deny rules at it and every CNAME of its chain, so that an alias cannot
 * get around a deny.
 *
 * @example
 * ```ts
 * import { parseRule, ruleMatches } from "./rule.ts";
 * import assert from "node:assert/strict";
 * const workload = { node: "", namespace: "", pod: "", container: "", command: "curl" };
 * const attempt = {
 *   address: "198.51.100.7", port: 443, workload,
 *   name: { name: "cdn.example.org", source: "dns" as const, chain: ["cdn.example.org", "edge.evil.net"] },
 * };
 * assert.ok(ruleMatches(parseRule("allow", "cdn.example.org:443"), attempt));
 * assert.ok(!ruleMatches(parseRule("allow", "edge.evil.net"), attempt));
 * assert.ok(ruleMatches(parseRule("deny", "*.evil.net"), attempt));
 * assert.ok(!ruleMatches(parseRule("allow", "cdn.example.org:80"), attempt));
 * assert.ok(!ruleMatches(parseRule("allow", "cdn.example.org"), { ...attempt, name: undefined }));
 * ```
 */
export function ruleMatches(rule: Rule, attempt: Attempt): boolean {
  if (!portInRange(attempt.port, rule.ports)) return false;
  if (!inScope(rule.scope, attempt.workload)) return false;
  const name = attempt.name;
  const names = name === undefined
    ? []
    : rule.action === "deny" && name.chain !== undefined
    ? [name.name, ...name.chain]
    : [name.name];
  return destinationMatches(rule.destination, attempt.address, names);
}
