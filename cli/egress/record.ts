/**
 * `egress record`: the policy that allows what a run saw, as a policy file
 * that `run` and `watch` accept and that passes on the same workload:
 * destinations by host name where known (else by address), their ports
 * (the destination port: source ports, ephemeral, are never part of a
 * rule), and, per workload, the pod (by labels, else by name) and
 * container, or the command outside pods.
 *
 * @module
 */

import { ciliumPolicyText } from "./cilium_policy.ts";
import { isHostName, parseDestination } from "./destination_pattern.ts";
import type { DestinationRecord } from "./egress_ledger.ts";
import { networkPolicyText } from "./network_policy.ts";
import { stableLabels } from "./pod_groups.ts";
import { type PolicyFileEntry, policyFileText } from "./policy_file.ts";
import { ruleText } from "./rule.ts";
import type { RuleScope } from "./rule_scope.ts";

/** How rules are scoped. */
export interface RecordOptions {
  /**
   * One scope per workload (watch, cluster mode): pods by namespace and
   * stable labels (by name when their labels are unknown) and container;
   * processes outside pods by command. Otherwise (`record -- COMMAND`)
   * rules apply to every process.
   */
  perWorkload: boolean;
}

/**
 * The `DEST:PORT` a recorded rule gives a destination: its host name if
 * known and one a rule can hold, else its address.
 *
 * @example
 * ```ts
 * import { recordedRuleText } from "./record.ts";
 * import assert from "node:assert/strict";
 * const d = { address: "2001:db8::7", port: 443 };
 * assert.equal(recordedRuleText({ ...d, name: { name: "api.example", source: "dns" } }), "api.example:443");
 * assert.equal(recordedRuleText({ ...d, name: { name: "bad name", source: "dns" } }), "[2001:db8::7]:443");
 * ```
 */
export function recordedRuleText(d: Pick<DestinationRecord, "address" | "port" | "name">): string {
  const dest = d.name && isHostName(d.name.name) ? d.name.name : d.address;
  return ruleText({ destination: parseDestination(dest), ports: { first: d.port, last: d.port } });
}

/** The scope a recorded rule gives a destination's workload. */
export function recordedScope(d: DestinationRecord, options: RecordOptions): RuleScope {
  if (!options.perWorkload) return {};
  const w = d.workload;
  if (!w.pod) return { command: w.command };
  const labels = stableLabels(w.labels);
  const scope: RuleScope = labels
    ? { namespace: w.namespace, labels }
    : { namespace: w.namespace, pod: w.pod };
  if (w.container) scope.container = w.container;
  return scope;
}

/**
 * The entries of the recorded policy: one per scope, its rules sorted
 * (names, then addresses) and each once.
 *
 * @example
 * ```ts
 * import { recordedEntries } from "./record.ts";
 * import assert from "node:assert/strict";
 * const d = (address: string, port: number, name?: string) => ({
 *   address, port, name: name ? { name, source: "dns" as const } : undefined,
 *   verdict: "violation" as const, ipversion: 4 as const, pid: 1, count: 1, failed: 0,
 *   errors: [], firstSec: 0, firstNsec: 0,
 *   workload: { node: "", namespace: "", pod: "", container: "", command: "curl" },
 * });
 * const entries = recordedEntries([d("192.0.2.1", 443, "b.example"), d("192.0.2.9", 80), d("192.0.2.2", 443, "b.example")], { perWorkload: true });
 * assert.deepEqual(entries.map((e) => [e.rules, e.scope]), [[["b.example:443", "192.0.2.9:80"], { command: "curl" }]]);
 * ```
 */
export function recordedEntries(
  destinations: readonly DestinationRecord[],
  options: RecordOptions,
): PolicyFileEntry[] {
  const entries = new Map<string, PolicyFileEntry & { pods: Set<string> }>();
  for (const d of destinations) {
    const scope = recordedScope(d, options);
    const key = JSON.stringify(scope);
    let entry = entries.get(key);
    if (entry === undefined) {
      entry = { action: "allow", rules: [], scope, pods: new Set() };
      entries.set(key, entry);
    }
    const text = recordedRuleText(d);
    if (!entry.rules.includes(text)) entry.rules.push(text);
    if (d.workload.pod) entry.pods.add(`${d.workload.namespace}/${d.workload.pod}`);
  }
  return [...entries.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(
    ([, { pods, ...entry }]) => {
      entry.rules.sort(compareRuleTexts);
      if (entry.scope.labels !== undefined && pods.size > 0) {
        entry.comment = `pods seen: ${[...pods].sort().join(", ")}`;
      }
      return entry;
    },
  );
}

function compareRuleTexts(a: string, b: string): number {
  const addressA = /^[\d\[]/.test(a);
  const addressB = /^[\d\[]/.test(b);
  if (addressA !== addressB) return addressA ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The recorded policy file's text.
 *
 * @example
 * ```ts
 * import { recordedPolicyText } from "./record.ts";
 * import assert from "node:assert/strict";
 * assert.equal(recordedPolicyText([], { perWorkload: false }, "nothing seen"), "# nothing seen\n\nversion: 1\nrules: []\n");
 * ```
 */
export function recordedPolicyText(
  destinations: readonly DestinationRecord[],
  options: RecordOptions,
  header?: string,
): string {
  return policyFileText(recordedEntries(destinations, options), header);
}

/** What `egress record --format` writes. */
export type RecordFormat = "policy" | "networkpolicy" | "cilium";

/** The formats of `egress record --format`. */
export const RECORD_FORMATS: readonly RecordFormat[] = ["policy", "networkpolicy", "cilium"];

/**
 * What `egress record` writes in `format`: a policy file (with `header` as
 * its top comment), or Kubernetes NetworkPolicy or CiliumNetworkPolicy
 * objects (always per group of pods).
 */
export function recordText(
  destinations: readonly DestinationRecord[],
  format: RecordFormat,
  options: RecordOptions,
  header?: string,
): string {
  switch (format) {
    case "policy":
      return recordedPolicyText(destinations, options, header);
    case "networkpolicy":
      return networkPolicyText(destinations);
    case "cilium":
      return ciliumPolicyText(destinations);
  }
}
