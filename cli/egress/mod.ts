/**
 * Egress verification without the kernel: the policy (rules, presets,
 * policy files), the verdict on each connect attempt, the ledger of
 * distinct destinations, the exit status, the reports (stderr table,
 * JUnit, JSON summary, GitHub Actions, baseline changes), `record`'s
 * outputs (policy file, NetworkPolicy, CiliumNetworkPolicy), and the flags
 * of `egress run|watch|record`. The commands' flows (tracers, COMMAND)
 * use these.
 *
 * A run, in short:
 *
 * ```ts
 * import { EgressLedger, egressOutcome, egressTable, loadPolicy, parseEgressFlags } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const flags = parseEgressFlags(["run", "--allow", "@loopback:8080", "--", "curl", "http://127.0.0.1:8080"]);
 * const ledger = new EgressLedger(loadPolicy(flags.policy));
 * const verdict = ledger.add({
 *   type: "C", timeSec: 0, timeNsec: 0, pid: 9, tid: 9, uid: 0, gid: 0, comm: "curl",
 *   mntns: 0, netns: 0, cgroupId: 0, ipversion: 4, saddr: "127.0.0.1", sport: 51000,
 *   daddr: "127.0.0.1", dport: 8080, node: "", namespace: "", pod: "", container: "",
 * }); // with the event's name: ledger.add(event, names.nameOf(event))
 * assert.equal(verdict?.allowed, true);
 * const outcome = egressOutcome(ledger, { lostEvents: 0, allowLost: flags.allowLost, commandStatus: 0 });
 * assert.equal(outcome.exitStatus, 0);
 * assert.match(egressTable(outcome), /PASSED/);
 * ```
 *
 * @module
 */

export type { DestinationName, NameDirectory } from "../../core/destination_name.ts";
export {
  EGRESS_HELP,
  type EgressCommand,
  type EgressFlags,
  parseEgressFlags,
} from "./egress_flags.ts";
export {
  expectations,
  loadPolicy,
  type Policy,
  type PolicySource,
  readPolicyText,
} from "./policy.ts";
export { parsePolicyFile, type PolicyFileEntry, policyFileText } from "./policy_file.ts";
export {
  type Attempt,
  describeOrigin,
  describeRule,
  parseRule,
  type Rule,
  type RuleAction,
  ruleError,
  ruleMatches,
  type RuleOrigin,
  ruleText,
} from "./rule.ts";
export { inScope, type RuleScope } from "./rule_scope.ts";
export { PRESETS } from "./presets.ts";
export { judge, type Verdict } from "./verdict.ts";
export { type Workload, workloadOf } from "./workload.ts";
export { type DestinationRecord, EgressLedger, type ExpectationRecord } from "./egress_ledger.ts";
export { type EgressOutcome, egressOutcome, type RunFacts } from "./egress_outcome.ts";
export {
  egressExitStatus,
  EXIT_LOST,
  EXIT_USAGE,
  EXIT_VIOLATION,
  type ExitFacts,
  failureReasons,
} from "./exit_status.ts";
export { egressTable } from "./report_table.ts";
export { type Summary, SUMMARY_VERSION, summaryJson, summaryOf } from "./summary_report.ts";
export { junitXml } from "./junit_report.ts";
export {
  errorAnnotations,
  type GithubActionsIo,
  publishToGithubActions,
  stepSummaryMarkdown,
} from "./github_actions.ts";
export { type BaselineDiff, baselineDiff } from "./baseline.ts";
export {
  RECORD_FORMATS,
  recordedEntries,
  recordedPolicyText,
  type RecordFormat,
  type RecordOptions,
  recordText,
} from "./record.ts";
export { networkPolicies, networkPolicyText } from "./network_policy.ts";
export { ciliumPolicies, ciliumPolicyText } from "./cilium_policy.ts";
