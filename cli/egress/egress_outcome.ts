/**
 * The outcome of an egress run: the ledger's destinations and
 * expectations, events lost, COMMAND's status, the baseline's changes, and
 * the exit status they make. What every report is written from.
 *
 * @module
 */

import { type BaselineDiff, baselineDiff } from "./baseline.ts";
import type { DestinationRecord, EgressLedger, ExpectationRecord } from "./egress_ledger.ts";
import { egressExitStatus, type ExitFacts, failureReasons } from "./exit_status.ts";
import type { Policy } from "./policy.ts";
import type { Rule } from "./rule.ts";

/** Everything the reports show. */
export interface EgressOutcome {
  /** The policy's rules, in order. */
  rules: readonly Rule[];
  /** For each rule, the attempts it decided. */
  ruleMatches: readonly number[];
  /** Distinct destinations: violations first, then as first seen. */
  destinations: readonly DestinationRecord[];
  expectations: readonly ExpectationRecord[];
  /** Distinct destinations judged violations. */
  violations: number;
  unmetExpectations: number;
  lostEvents: number;
  /** What was lost, each as a phrase ("3 events (ring buffer full)"). */
  lostDetails: readonly string[];
  allowLost: boolean;
  /** Processes of COMMAND still running when the run ended: their later connections are not judged. */
  stillRunning: readonly RunningProcess[];
  /** COMMAND's exit status; undefined without a command. */
  commandStatus?: number;
  /** Why the run fails on the policy (empty if it does not). */
  reasons: string[];
  exitStatus: number;
  baseline?: BaselineDiff;
}

/** A process, by pid and command name. */
export interface RunningProcess {
  pid: number;
  command: string;
}

/** What the ledger does not know. */
export interface RunFacts {
  lostEvents: number;
  /** What was lost, each as a phrase. */
  lostDetails?: readonly string[];
  allowLost: boolean;
  /** Processes of COMMAND still running when the run ended. */
  stillRunning?: readonly RunningProcess[];
  commandStatus?: number;
  /** `--baseline FILE`, read. */
  baseline?: { file: string; policy: Policy };
}

/**
 * The outcome of a run whose attempts are in `ledger`.
 *
 * @example
 * ```ts
 * import { EgressLedger } from "./egress_ledger.ts";
 * import { egressOutcome } from "./egress_outcome.ts";
 * import { loadPolicy } from "./policy.ts";
 * import assert from "node:assert/strict";
 * const ledger = new EgressLedger(loadPolicy([{ kind: "rule", action: "expect", text: "db:5432" }]));
 * const outcome = egressOutcome(ledger, { lostEvents: 0, allowLost: false, commandStatus: 0 });
 * assert.deepEqual([outcome.exitStatus, outcome.reasons], [3, ["1 expectation not met"]]);
 * ```
 */
export function egressOutcome(ledger: EgressLedger, facts: RunFacts): EgressOutcome {
  const destinations = ledger.destinations();
  const expectations = ledger.expectations();
  const exitFacts: ExitFacts = {
    violations: destinations.filter((d) => d.verdict === "violation").length,
    unmetExpectations: expectations.filter((e) => e.connections === 0).length,
    lostEvents: facts.lostEvents,
    allowLost: facts.allowLost,
  };
  if (facts.commandStatus !== undefined) exitFacts.commandStatus = facts.commandStatus;
  const outcome: EgressOutcome = {
    rules: ledger.policy.rules,
    ruleMatches: ledger.ruleMatches(),
    destinations,
    expectations,
    violations: exitFacts.violations,
    unmetExpectations: exitFacts.unmetExpectations,
    lostEvents: facts.lostEvents,
    lostDetails: facts.lostDetails ?? [],
    allowLost: facts.allowLost,
    stillRunning: facts.stillRunning ?? [],
    reasons: failureReasons(exitFacts),
    exitStatus: egressExitStatus(exitFacts),
  };
  if (facts.commandStatus !== undefined) outcome.commandStatus = facts.commandStatus;
  if (facts.baseline) {
    outcome.baseline = baselineDiff(facts.baseline.file, facts.baseline.policy, destinations);
  }
  return outcome;
}
