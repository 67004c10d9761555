/**
 * `--junit FILE`: the outcome of an egress run as JUnit XML, for the test
 * reporters of CI systems (written with xmlbuilder2). One test case per
 * rule (passing: it says what it decided), per expectation (failing when
 * unmet), per violating destination (failing), and one for lost events.
 *
 * @module
 */

import { create } from "xmlbuilder2";
import type { EgressOutcome } from "./egress_outcome.ts";
import { describeDestination } from "./report_table.ts";
import { rfc3339 } from "./report_time.ts";
import { describeOrigin, describeRule } from "./rule.ts";
import { printable } from "../../core/printable.ts";

type XMLBuilder = ReturnType<typeof create>;

interface TestCase {
  name: string;
  /** Failure message and details; undefined: the case passed. */
  failure?: { message: string; type: string; details: string };
  /** Text for system-out. */
  out?: string;
}

/**
 * The JUnit XML of `outcome`.
 *
 * @example
 * ```ts
 * import { EgressLedger } from "./egress_ledger.ts";
 * import { egressOutcome } from "./egress_outcome.ts";
 * import { junitXml } from "./junit_report.ts";
 * import { loadPolicy } from "./policy.ts";
 * import assert from "node:assert/strict";
 * const ledger = new EgressLedger(loadPolicy([{ kind: "rule", action: "expect", text: "db:5432" }]));
 * const xml = junitXml(egressOutcome(ledger, { lostEvents: 0, allowLost: false }));
 * assert.match(xml, /<testsuites name="tcpgadget egress" tests="4" failures="1" errors="0">/);
 * assert.match(xml, /<failure message="expectation not met: no established connection matched it"/);
 * ```
 */
export function junitXml(outcome: EgressOutcome): string {
  const suites: [string, TestCase[]][] = [
    [
      "egress.rules",
      outcome.rules.map((rule, i) => {
        const n = outcome.ruleMatches[i];
        return {
          name: `#${i + 1} ${printable(describeRule(rule))} [${printable(describeOrigin(rule))}]`,
          out: `${rule.action === "deny" ? "denied" : "allowed"} ${n} connection attempt${
            n === 1 ? "" : "s"
          }`,
        };
      }),
    ],
    [
      "egress.expectations",
      outcome.expectations.map((e) => {
        const rule = outcome.rules[e.ruleIndex];
        const name = `${printable(describeRule(rule))} [${printable(describeOrigin(rule))}]`;
        return e.connections > 0
          ? {
            name,
            out: `met by ${e.connections} established connection${e.connections === 1 ? "" : "s"}`,
          }
          : {
            name,
            failure: {
              message: "expectation not met: no established connection matched it",
              type: "unmet-expectation",
              details: `${describeRule(rule)} was never reached`,
            },
          };
      }),
    ],
    ["egress.violations", violationCases(outcome)],
    ["egress.events", [lostCase(outcome)]],
  ];
  const cases = suites.flatMap(([, list]) => list);
  const failures = cases.filter((c) => c.failure).length;
  const root = create({ version: "1.0", encoding: "UTF-8" }).ele("testsuites", {
    name: "tcpgadget egress",
    tests: String(cases.length),
    failures: String(failures),
    errors: "0",
  });
  for (const [name, list] of suites) {
    const suite = root.ele("testsuite", {
      name,
      tests: String(list.length),
      failures: String(list.filter((c) => c.failure).length),
      errors: "0",
      skipped: "0",
    });
    for (const testCase of list) addCase(suite, name, testCase);
  }
  return root.end({ prettyPrint: true }) + "\n";
}

function addCase(suite: XMLBuilder, classname: string, testCase: TestCase): void {
  const element = suite.ele("testcase", { classname, name: testCase.name });
  if (testCase.failure) {
    element.ele("failure", { message: testCase.failure.message, type: testCase.failure.type })
      .txt(testCase.failure.details);
  }
  if (testCase.out !== undefined) element.ele("system-out").txt(testCase.out);
}

function violationCases(outcome: EgressOutcome): TestCase[] {
  const violations = outcome.destinations.filter((d) => d.verdict === "violation");
  if (violations.length === 0) {
    return [{
      name: "no destination broke the policy",
      out: `${outcome.destinations.length} destinations judged`,
    }];
  }
  return violations.map((d) => {
    const rule = d.ruleIndex === undefined ? undefined : outcome.rules[d.ruleIndex];
    const why = rule
      ? `denied by rule #${d.ruleIndex! + 1}: ${printable(describeRule(rule))} [${
        printable(describeOrigin(rule))
      }]`
      : "no rule allows it";
    const cnames = d.name?.chain && d.name.chain.length > 1
      ? `\nCNAME chain: ${d.name.chain.map(printable).join(" -> ")}`
      : "";
    return {
      name: describeDestination(d),
      failure: {
        message: why,
        type: "violation",
        details: `${describeDestination(d)}: ${why}\n` +
          `attempts: ${d.count} (${d.failed} failed${
            d.errors.length ? `: ${printable(d.errors.join(", "))}` : ""
          })\n` +
          `first: ${rfc3339(d.firstSec, d.firstNsec)} (pid ${d.pid}` +
          `${d.workload.node ? `, node ${printable(d.workload.node)}` : ""})${cnames}`,
      },
    };
  });
}

function lostCase(outcome: EgressOutcome): TestCase {
  const name = "no event lost";
  if (outcome.lostEvents === 0) return { name, out: "every event was seen" };
  if (outcome.allowLost) {
    return { name, out: `${outcome.lostEvents} events lost, accepted (--allow-lost)` };
  }
  return {
    name,
    failure: {
      message: `${outcome.lostEvents} events lost: the run cannot vouch for what it did not see`,
      type: "lost-events",
      details: [...outcome.lostDetails.map(printable), "pass --allow-lost to accept lost events"]
        .join("\n"),
    },
  };
}
