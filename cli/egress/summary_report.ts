/**
 * `--summary FILE`: the outcome of an egress run as JSON (schema in
 * README.md, "Egress verification"; `version` changes when a field's
 * meaning does).
 *
 * @module
 */

import type { DestinationRecord } from "./egress_ledger.ts";
import type { EgressOutcome } from "./egress_outcome.ts";
import { rfc3339 } from "./report_time.ts";
import { describeOrigin, type Rule, ruleText } from "./rule.ts";
import type { RuleScope } from "./rule_scope.ts";
import { printableJson } from "../../core/printable.ts";

/** The summary's schema version. */
export const SUMMARY_VERSION = 1;

/** A rule in the summary. */
export interface SummaryRule {
  /** 1-based position in the policy: what `rule` of a destination refers to. */
  number: number;
  action: Rule["action"];
  /** `DEST[:PORTS]`, canonical. */
  rule: string;
  scope: RuleScope;
  /** `--allow`, `--deny`, `--expect`, or `FILE:LINE`. */
  origin: string;
  /** Attempts this rule decided. */
  matched: number;
}

/** A destination in the summary. */
export interface SummaryDestination {
  verdict: "allowed" | "violation";
  /** Number of the rule that decided; null: no rule matched (a violation). */
  rule: number | null;
  host: string | null;
  hostSource: "dns" | "hosts" | null;
  /** CNAMEs from host to the address's owner, host first; empty if none known. */
  cnames: string[];
  address: string;
  ipVersion: 4 | 6;
  port: number;
  who: {
    node: string;
    namespace: string;
    pod: string;
    container: string;
    command: string;
    /** Process of the first attempt. */
    pid: number;
  };
  count: number;
  failed: number;
  errors: string[];
  /** RFC 3339, UTC. */
  first: string;
}

/** The whole summary. */
export interface Summary {
  version: number;
  passed: boolean;
  exitStatus: number;
  reasons: string[];
  lostEvents: number;
  /** What was lost, each as a phrase. */
  lost: string[];
  allowLost: boolean;
  commandStatus: number | null;
  /** Processes of COMMAND still running when the run ended (later connections not judged). */
  stillRunning: { pid: number; command: string }[];
  rules: SummaryRule[];
  expectations: { rule: number; text: string; met: boolean; connections: number }[];
  destinations: SummaryDestination[];
  baseline?: {
    file: string;
    added: SummaryDestination[];
    removed: Omit<SummaryRule, "matched" | "number">[];
  };
}

/**
 * The summary of `outcome` as an object.
 *
 * @example
 * ```ts
 * import { EgressLedger } from "./egress_ledger.ts";
 * import { egressOutcome } from "./egress_outcome.ts";
 * import { loadPolicy } from "./policy.ts";
 * import { summaryOf } from "./summary_report.ts";
 * import assert from "node:assert/strict";
 * const ledger = new EgressLedger(loadPolicy([{ kind: "rule", action: "allow", text: "*:443" }]));
 * const summary = summaryOf(egressOutcome(ledger, { lostEvents: 2, allowLost: false, commandStatus: 0 }));
 * assert.deepEqual([summary.passed, summary.exitStatus, summary.rules[0].origin], [false, 4, "--allow"]);
 * ```
 */
export function summaryOf(outcome: EgressOutcome): Summary {
  const summary: Summary = {
    version: SUMMARY_VERSION,
    passed: outcome.reasons.length === 0,
    exitStatus: outcome.exitStatus,
    reasons: outcome.reasons,
    lostEvents: outcome.lostEvents,
    lost: [...outcome.lostDetails],
    allowLost: outcome.allowLost,
    commandStatus: outcome.commandStatus ?? null,
    stillRunning: outcome.stillRunning.map((p) => ({ ...p })),
    rules: outcome.rules.map((rule, i) => ({
      number: i + 1,
      ...summaryRule(rule),
      matched: outcome.ruleMatches[i],
    })),
    expectations: outcome.expectations.map((e) => ({
      rule: e.ruleIndex + 1,
      text: ruleText(outcome.rules[e.ruleIndex]),
      met: e.connections > 0,
      connections: e.connections,
    })),
    destinations: outcome.destinations.map(summaryDestination),
  };
  if (outcome.baseline) {
    summary.baseline = {
      file: outcome.baseline.file,
      added: outcome.baseline.added.map(summaryDestination),
      removed: outcome.baseline.removed.map(summaryRule),
    };
  }
  return summary;
}

/** The summary as JSON text (pretty, ending with a newline). */
export function summaryJson(outcome: EgressOutcome): string {
  return printableJson(summaryOf(outcome), 2) + "\n";
}

function summaryRule(rule: Rule): Omit<SummaryRule, "matched" | "number"> {
  return {
    action: rule.action,
    rule: ruleText(rule),
    scope: rule.scope,
    origin: describeOrigin(rule),
  };
}

function summaryDestination(d: DestinationRecord): SummaryDestination {
  return {
    verdict: d.verdict,
    rule: d.ruleIndex === undefined ? null : d.ruleIndex + 1,
    host: d.name?.name ?? null,
    hostSource: d.name?.source ?? null,
    cnames: d.name?.chain ?? [],
    address: d.address,
    ipVersion: d.ipversion,
    port: d.port,
    who: {
      node: d.workload.node,
      namespace: d.workload.namespace,
      pod: d.workload.pod,
      container: d.workload.container,
      command: d.workload.command,
      pid: d.pid,
    },
    count: d.count,
    failed: d.failed,
    errors: d.errors,
    first: rfc3339(d.firstSec, d.firstNsec),
  };
}
