/**
 * The verdict on one connection attempt: allowed by a rule, or a
 * violation (denied by a rule, or allowed by none).
 *
 * @module
 */

import type { Policy } from "./policy.ts";
import { type Attempt, type Rule, ruleMatches } from "./rule.ts";

/** Allowed by rule `index` of the policy, or a violation (by deny rule `index`, or no rule). */
export type Verdict =
  | { allowed: true; index: number; rule: Rule }
  | { allowed: false; index: number; rule: Rule }
  | { allowed: false; index?: undefined; rule?: undefined };

/**
 * Judges an attempt: the first rule that matches decides (allow and
 * expect rules allow, deny rules deny); none: a violation. Whether the
 * connect succeeded plays no part: a refused or timed-out attempt to a
 * forbidden destination is a violation, a failed one to an allowed
 * destination is not.
 *
 * @example
 * ```ts
 * import { judge } from "./verdict.ts";
 * import { loadPolicy } from "./policy.ts";
 * import assert from "node:assert/strict";
 * const policy = loadPolicy([
 *   { kind: "rule", action: "deny", text: "10.0.0.0/8:22" },
 *   { kind: "rule", action: "allow", text: "10.0.0.0/8" },
 * ]);
 * const workload = { node: "", namespace: "", pod: "", container: "", command: "ssh" };
 * assert.equal(judge(policy, { address: "10.1.1.1", port: 22, workload }).index, 0);
 * assert.equal(judge(policy, { address: "10.1.1.1", port: 80, workload }).allowed, true);
 * assert.deepEqual(judge(policy, { address: "11.1.1.1", port: 80, workload }), { allowed: false });
 * ```
 */
export function judge(policy: Policy, attempt: Attempt): Verdict {
  const rules = policy.rules;
  for (let index = 0; index < rules.length; index++) {
    const rule = rules[index];
    if (ruleMatches(rule, attempt)) {
      return rule.action === "deny"
        ? { allowed: false, index, rule }
        : { allowed: true, index, rule };
    }
  }
  return { allowed: false };
}
