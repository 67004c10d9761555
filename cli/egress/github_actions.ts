/**
 * Reports under GitHub Actions (`GITHUB_ACTIONS=true`): an `::error`
 * workflow command per violation (and per unmet expectation, and for lost
 * events), and a Markdown table appended to `$GITHUB_STEP_SUMMARY`.
 *
 * @module
 */

import type { DestinationRecord } from "./egress_ledger.ts";
import type { EgressOutcome } from "./egress_outcome.ts";
import { describeDestination } from "./report_table.ts";
import { rfc3339 } from "./report_time.ts";
import { describeOrigin, describeRule, ruleText } from "./rule.ts";
import { printable } from "../../core/printable.ts";

// GitHub shows at most 10 error annotations per step; the last one we
// write says how many more there are.
const MAX_ANNOTATIONS = 10;
// A step summary holds at most 1 MiB; rows past this many are counted, not listed.
const MAX_ROWS = 1000;

/**
 * Workflow command data: `%`, CR and LF escaped as GitHub's runner
 * unescapes them.
 *
 * @example
 * ```ts
 * import { escapeWorkflowData, escapeWorkflowProperty } from "./github_actions.ts";
 * import assert from "node:assert/strict";
 * assert.equal(escapeWorkflowData("50%\r\n::x"), "50%25%0D%0A::x");
 * assert.equal(escapeWorkflowProperty("a: b, c"), "a%3A b%2C c");
 * ```
 */
export function escapeWorkflowData(text: string): string {
  return text.replaceAll("%", "%25").replaceAll("\r", "%0D").replaceAll("\n", "%0A");
}

/** Workflow command property value: as data, and `:` and `,` too. */
export function escapeWorkflowProperty(text: string): string {
  return escapeWorkflowData(text).replaceAll(":", "%3A").replaceAll(",", "%2C");
}

/**
 * Markdown text showing `text` literally: every ASCII punctuation
 * character backslash-escaped (no emphasis, link, HTML, table cell break
 * or mention can start), after {@link printable}.
 *
 * @example
 * ```ts
 * import { escapeMarkdown } from "./github_actions.ts";
 * import assert from "node:assert/strict";
 * assert.equal(escapeMarkdown("a|b *c* <img>\n"), "a\\|b \\*c\\* \\<img\\>\\\\n");
 * ```
 */
export function escapeMarkdown(text: string): string {
  return printable(text).replace(/[!-\/:-@\[-`{-~]/g, "\\$&");
}

/**
 * The `::error` lines for the failures of `outcome` (at most 10).
 *
 * @example
 * ```ts
 * import { EgressLedger } from "./egress_ledger.ts";
 * import { egressOutcome } from "./egress_outcome.ts";
 * import { errorAnnotations } from "./github_actions.ts";
 * import { loadPolicy } from "./policy.ts";
 * import assert from "node:assert/strict";
 * const ledger = new EgressLedger(loadPolicy([{ kind: "rule", action: "expect", text: "db:5432" }]));
 * assert.deepEqual(errorAnnotations(egressOutcome(ledger, { lostEvents: 0, allowLost: false })), [
 *   "::error title=tcpgadget egress%3A expectation not met::expect db:5432: no established connection matched it",
 * ]);
 * ```
 */
export function errorAnnotations(outcome: EgressOutcome): string[] {
  const messages: [string, string][] = [];
  for (const d of outcome.destinations) {
    if (d.verdict !== "violation") continue;
    messages.push(["tcpgadget egress: violation", violationMessage(d, outcome)]);
  }
  for (const e of outcome.expectations) {
    if (e.connections > 0) continue;
    const rule = outcome.rules[e.ruleIndex];
    messages.push([
      "tcpgadget egress: expectation not met",
      `${printable(describeRule(rule))}${originSuffix(describeOrigin(rule))}: ` +
      "no established connection matched it",
    ]);
  }
  if (outcome.lostEvents > 0 && !outcome.allowLost) {
    messages.push([
      "tcpgadget egress: events lost",
      `${outcome.lostEvents} events lost` +
      (outcome.lostDetails.length > 0 ? ` (${printable(outcome.lostDetails.join("; "))})` : "") +
      ": the run cannot vouch for what it did not see " +
      "(--allow-lost to accept)",
    ]);
  }
  if (messages.length > MAX_ANNOTATIONS) {
    const more = messages.length - (MAX_ANNOTATIONS - 1);
    messages.splice(MAX_ANNOTATIONS - 1, messages.length, [
      "tcpgadget egress",
      `and ${more} more failures: see the step summary`,
    ]);
  }
  return messages.map(([title, message]) =>
    `::error title=${escapeWorkflowProperty(title)}::${escapeWorkflowData(message)}`
  );
}

function violationMessage(d: DestinationRecord, outcome: EgressOutcome): string {
  const rule = d.ruleIndex === undefined ? undefined : outcome.rules[d.ruleIndex];
  const why = rule
    ? `denied by ${printable(describeRule(rule))}${originSuffix(describeOrigin(rule))}`
    : "no rule allows it";
  return `${describeDestination(d)}: ${why} (${d.count} attempt${d.count === 1 ? "" : "s"})`;
}

function originSuffix(origin: string): string {
  return origin.startsWith("--") ? "" : ` (${printable(origin)})`;
}

/**
 * The Markdown for `$GITHUB_STEP_SUMMARY`: the verdict, a table of the
 * destinations (violations first), the expectations and the baseline's
 * changes. Every string from the traced system is escaped.
 */
export function stepSummaryMarkdown(outcome: EgressOutcome): string {
  const out: string[] = [];
  const passed = outcome.reasons.length === 0;
  out.push(
    `### tcpgadget egress: ${passed ? "✅ passed" : `❌ failed: ${outcome.reasons.join(", ")}`}`,
    "",
  );
  if (outcome.destinations.length === 0) out.push("No connection attempts.", "");
  else {
    out.push(
      "| Verdict | Rule | Host | Source | Address | Port | Who | Count | Failed | First (UTC) |",
      "| --- | --- | --- | --- | --- | ---: | --- | ---: | ---: | --- |",
    );
    for (const d of outcome.destinations.slice(0, MAX_ROWS)) {
      const rule = d.ruleIndex === undefined ? undefined : outcome.rules[d.ruleIndex];
      out.push(
        "| " + [
          d.verdict === "allowed" ? "allowed" : "❌ **violation**",
          rule ? escapeMarkdown(`${rule.action} ${ruleText(rule)}`) : "no rule",
          d.name ? escapeMarkdown(d.name.name) : "",
          d.name ? d.name.source : "",
          escapeMarkdown(d.address),
          String(d.port),
          escapeMarkdown(describeWorkloadRaw(d)),
          String(d.count),
          d.failed === 0 ? "0" : `${d.failed} ${escapeMarkdown(d.errors.join(", "))}`,
          escapeMarkdown(rfc3339(d.firstSec, d.firstNsec)),
        ].join(" | ") + " |",
      );
    }
    if (outcome.destinations.length > MAX_ROWS) {
      out.push("", `… and ${outcome.destinations.length - MAX_ROWS} more destinations.`);
    }
    out.push("");
  }
  if (outcome.expectations.length > 0) {
    out.push("| Expectation | Result |", "| --- | --- |");
    for (const e of outcome.expectations) {
      out.push(
        `| ${escapeMarkdown(describeRule(outcome.rules[e.ruleIndex]))} | ${
          e.connections > 0 ? `met (${e.connections})` : "❌ **not met**"
        } |`,
      );
    }
    out.push("");
  }
  const baseline = outcome.baseline;
  if (baseline) {
    out.push(
      `Against baseline ${escapeMarkdown(baseline.file)}: ${baseline.added.length} added, ` +
        `${baseline.removed.length} removed.`,
      "",
    );
    for (const d of baseline.added.slice(0, MAX_ROWS)) {
      out.push(`- added: ${escapeMarkdown(describeDestinationRaw(d))}`);
    }
    for (const rule of baseline.removed.slice(0, MAX_ROWS)) {
      out.push(`- removed: ${escapeMarkdown(describeRule(rule))}`);
    }
    out.push("");
  }
  if (outcome.lostEvents > 0) {
    out.push(
      `${outcome.lostEvents} events lost${
        outcome.lostDetails.length > 0 ? ` (${escapeMarkdown(outcome.lostDetails.join("; "))})` : ""
      }${outcome.allowLost ? ", accepted (--allow-lost)" : ""}.`,
      "",
    );
  }
  if (outcome.stillRunning.length > 0) {
    out.push(
      `Still running when the run ended (their later connections are not judged): ${
        outcome.stillRunning.map((p) => `pid ${p.pid} ${escapeMarkdown(p.command)}`).join(", ")
      }.`,
      "",
    );
  }
  return out.join("\n");
}

// describeWorkload and describeDestination escape for the terminal;
// escapeMarkdown escapes again, so it is given the raw strings.
function describeWorkloadRaw(d: DestinationRecord): string {
  const w = d.workload;
  return w.pod ? `${w.namespace}/${w.pod}/${w.container} (${w.command})` : w.command;
}

function describeDestinationRaw(d: DestinationRecord): string {
  const address = d.ipversion === 6 ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;
  return `${d.name ? `${d.name.name} (${d.name.source}) ` : ""}${address} by ${
    describeWorkloadRaw(d)
  }`;
}

/** Where the GitHub Actions reports go, and what they are written with. */
export interface GithubActionsIo {
  /** The environment (GITHUB_ACTIONS, GITHUB_STEP_SUMMARY). */
  env: { get(name: string): string | undefined };
  /** Writes workflow commands (lines) where the runner reads them: stdout. */
  writeCommands(text: string): Promise<void>;
}

/**
 * Under GitHub Actions, writes the annotations and appends the step
 * summary; elsewhere does nothing. Returns whether it wrote.
 */
export async function publishToGithubActions(
  outcome: EgressOutcome,
  io: GithubActionsIo,
): Promise<boolean> {
  if (io.env.get("GITHUB_ACTIONS") !== "true") return false;
  const annotations = errorAnnotations(outcome);
  if (annotations.length > 0) await io.writeCommands(annotations.join("\n") + "\n");
  const summaryFile = io.env.get("GITHUB_STEP_SUMMARY");
  if (summaryFile) {
    await Deno.writeTextFile(summaryFile, stepSummaryMarkdown(outcome) + "\n", { append: true });
  }
  return true;
}
