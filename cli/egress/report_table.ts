/**
 * The report printed on stderr at the end of an egress run: a table of
 * the distinct destinations, the expectations, the baseline's changes and
 * the verdict. Every string from the traced system is escaped.
 *
 * @module
 */

import type { DestinationRecord } from "./egress_ledger.ts";
import type { EgressOutcome } from "./egress_outcome.ts";
import { describeRule, type Rule, ruleText } from "./rule.ts";
import { timeOfDay } from "./report_time.ts";
import { printable } from "../../core/printable.ts";
import { describeWorkload } from "./workload.ts";

const HEADER = [
  "VERDICT",
  "RULE",
  "HOST",
  "SOURCE",
  "ADDRESS",
  "PORT",
  "WHO",
  "COUNT",
  "FAILED",
  "FIRST (UTC)",
];

/**
 * The report's lines, each ending with a newline.
 *
 * @example
 * ```ts
 * import { EgressLedger } from "./egress_ledger.ts";
 * import { egressOutcome } from "./egress_outcome.ts";
 * import { egressTable } from "./report_table.ts";
 * import { loadPolicy } from "./policy.ts";
 * import assert from "node:assert/strict";
 * const ledger = new EgressLedger(loadPolicy([{ kind: "rule", action: "allow", text: "@loopback" }]));
 * ledger.add({
 *   type: "C", timeSec: 0, timeNsec: 5e6, pid: 7, tid: 7, uid: 0, gid: 0, comm: "evil\x1b[2J",
 *   mntns: 0, netns: 0, cgroupId: 0, ipversion: 4, saddr: "10.0.0.1", sport: 40000,
 *   daddr: "192.0.2.9", dport: 443, node: "", namespace: "", pod: "", container: "",
 * });
 * const table = egressTable(egressOutcome(ledger, { lostEvents: 0, allowLost: false }));
 * assert.match(table, /^VIOLATION +no rule +- +- +192\.0\.2\.9 +443 +evil\\x1b\[2J +1 +0 +00:00:00\.005$/m);
 * assert.ok(!table.includes("\x1b"));
 * ```
 */
export function egressTable(outcome: EgressOutcome): string {
  const lines: string[] = [];
  const n = outcome.destinations.length;
  lines.push(
    `tcpgadget: egress: ${n} destination${n === 1 ? "" : "s"}, ${outcome.violations} ` +
      `violation${outcome.violations === 1 ? "" : "s"}` +
      (outcome.expectations.length > 0
        ? `; expectations: ${outcome.expectations.length - outcome.unmetExpectations} met, ` +
          `${outcome.unmetExpectations} not met`
        : ""),
  );
  if (n > 0) {
    const rows = outcome.destinations.map((d) => destinationRow(d, outcome.rules));
    lines.push(...alignColumns([HEADER, ...rows]));
  }
  if (outcome.stillRunning.length > 0) {
    lines.push(
      `still running when the run ended (their later connections are not judged): ${
        outcome.stillRunning.map((p) => `pid ${p.pid} ${printable(p.command)}`).join(", ")
      }`,
    );
  }
  for (const expectation of outcome.expectations) {
    const rule = outcome.rules[expectation.ruleIndex];
    lines.push(
      `expected ${printable(describeRule(rule))}${originSuffix(rule)}: ` +
        (expectation.connections > 0
          ? `met (${expectation.connections} connection${expectation.connections === 1 ? "" : "s"})`
          : "NOT MET (no established connection matched it)"),
    );
  }
  const baseline = outcome.baseline;
  if (baseline) {
    lines.push(
      `baseline ${printable(baseline.file)}: ${baseline.added.length} added, ` +
        `${baseline.removed.length} removed`,
    );
    for (const d of baseline.added) lines.push(`  + ${describeDestination(d)}`);
    for (const rule of baseline.removed) {
      lines.push(`  - ${printable(describeRule(rule))}${originSuffix(rule)}`);
    }
  }
  if (outcome.lostEvents > 0) {
    lines.push(
      `tcpgadget: egress: ${outcome.lostEvents} events lost` +
        (outcome.lostDetails.length > 0 ? ` (${outcome.lostDetails.join("; ")})` : "") + ": " +
        (outcome.allowLost
          ? "accepted (--allow-lost)"
          : "the run cannot vouch for what it did not see (--allow-lost to accept)"),
    );
  }
  lines.push(
    outcome.reasons.length === 0
      ? "tcpgadget: egress: PASSED"
      : `tcpgadget: egress: FAILED: ${outcome.reasons.join(", ")}`,
  );
  return lines.map((line) => line + "\n").join("");
}

function destinationRow(d: DestinationRecord, rules: readonly Rule[]): string[] {
  const rule = d.ruleIndex === undefined ? undefined : rules[d.ruleIndex];
  return [
    d.verdict === "allowed" ? "allowed" : "VIOLATION",
    rule ? `${rule.action} ${printable(ruleText(rule))}${originSuffix(rule)}` : "no rule",
    d.name ? printable(d.name.name) : "-",
    d.name ? d.name.source : "-",
    d.address,
    String(d.port),
    describeWorkload(d.workload),
    String(d.count),
    d.failed === 0 ? "0" : `${d.failed} ${printable(d.errors.join(","))}`,
    timeOfDay(d.firstSec, d.firstNsec),
  ];
}

/** A destination on one line: `api.github.com (dns) 140.82.112.5:443 by curl`. */
export function describeDestination(d: DestinationRecord): string {
  const address = d.ipversion === 6 ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;
  const name = d.name ? `${printable(d.name.name)} (${d.name.source}) ` : "";
  return `${name}${address} by ${describeWorkload(d.workload)}`;
}

function originSuffix(rule: Rule): string {
  return rule.origin.kind === "file" ? ` [${printable(rule.origin.file)}:${rule.origin.line}]` : "";
}

function alignColumns(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) =>
    row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i] + 2)).join("")
  );
}
