/**
 * `--baseline FILE`: what changed against a recorded policy. Added: the
 * destinations the baseline does not allow. Removed: the baseline's allow
 * (and expect) rules that no destination of this run matched.
 *
 * @module
 */

import type { DestinationRecord } from "./egress_ledger.ts";
import type { Policy } from "./policy.ts";
import { type Rule, ruleMatches } from "./rule.ts";
import { judge } from "./verdict.ts";

/** Destinations added and rules no longer used, against a baseline. */
export interface BaselineDiff {
  /** The baseline's file name. */
  file: string;
  added: DestinationRecord[];
  removed: Rule[];
}

/**
 * Compares this run's destinations with `baseline`, read from `file`.
 *
 * @example
 * ```ts
 * import { baselineDiff } from "./baseline.ts";
 * import { loadPolicy } from "./policy.ts";
 * import { ruleText } from "./rule.ts";
 * import assert from "node:assert/strict";
 * const baseline = loadPolicy([
 *   { kind: "rule", action: "allow", text: "a.example:443" },
 *   { kind: "rule", action: "allow", text: "b.example:443" },
 * ]);
 * const seen = {
 *   address: "192.0.2.1", port: 443, name: { name: "a.example", source: "dns" as const },
 *   workload: { node: "", namespace: "", pod: "", container: "", command: "curl" },
 *   verdict: "allowed" as const, ipversion: 4 as const, pid: 1, count: 1, failed: 0, errors: [],
 *   firstSec: 0, firstNsec: 0,
 * };
 * const diff = baselineDiff("b.yaml", baseline, [seen, { ...seen, name: { name: "c.example", source: "dns" as const } }]);
 * assert.deepEqual(diff.added.map((d) => d.name?.name), ["c.example"]);
 * assert.deepEqual(diff.removed.map(ruleText), ["b.example:443"]);
 * ```
 */
export function baselineDiff(
  file: string,
  baseline: Policy,
  destinations: readonly DestinationRecord[],
): BaselineDiff {
  const added = destinations.filter((destination) => !judge(baseline, destination).allowed);
  const removed = baseline.rules.filter((rule) =>
    rule.action !== "deny" && !destinations.some((destination) => ruleMatches(rule, destination))
  );
  return { file, added, removed };
}
