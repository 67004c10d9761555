/**
 * The reports of an egress run: the stderr table, the JSON summary, JUnit
 * XML (read by Python's junitparser), GitHub Actions annotations and step
 * summary (rendered by markdown-it-py), the baseline's changes; with
 * hostile strings from the traced system in every one.
 */

import type { DestinationName } from "../core/destination_name.ts";
import { baselineDiff } from "../cli/egress/baseline.ts";
import { EgressLedger } from "../cli/egress/egress_ledger.ts";
import { type EgressOutcome, egressOutcome } from "../cli/egress/egress_outcome.ts";
import {
  errorAnnotations,
  publishToGithubActions,
  stepSummaryMarkdown,
} from "../cli/egress/github_actions.ts";
import { junitXml } from "../cli/egress/junit_report.ts";
import { loadPolicy } from "../cli/egress/policy.ts";
import { parsePolicyFile } from "../cli/egress/policy_file.ts";
import { egressTable } from "../cli/egress/report_table.ts";
import { type Summary, summaryJson } from "../cli/egress/summary_report.ts";
import { activeCharacter } from "./helpers/active_characters.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { connectEvent, podConnectEvent } from "./helpers/connect_event.ts";
import { pythonPackages, runPython } from "./helpers/python_packages.ts";

// What a traced process or pod could name itself or its destination:
// terminal escapes, a new line that would start a workflow command, CR, a
// C1 CSI, a bidi override, Markdown and HTML, GitHub's % escapes.
const EVIL_COMM = "ev|l*\x1b]0;t\x07\n::error::x";
const EVIL_NAME = "a\u202eexe.example\r\n%0A::warning::pwned <b>|</b>";
const EVIL_POD = "web-0\u009b2J`x`";

const T = 1_765_000_000;

function hostileOutcome(): EgressOutcome {
  const policy = loadPolicy([
    { kind: "rule", action: "allow", text: "registry.npmjs.org:443" },
    { kind: "rule", action: "deny", text: "10.0.0.0/8:22" },
    { kind: "rule", action: "allow", text: "@private" },
    { kind: "rule", action: "expect", text: "db.internal:5432" },
  ]);
  const ledger = new EgressLedger(policy);
  const npm: DestinationName = { name: "registry.npmjs.org", source: "dns" };
  const evil: DestinationName = {
    name: EVIL_NAME,
    source: "dns",
    chain: [EVIL_NAME, "c.evil.net"],
  };
  ledger.add(connectEvent({ daddr: "104.16.0.35", dport: 443, comm: "npm", timeSec: T }), npm);
  ledger.add(connectEvent({ daddr: "104.16.0.35", dport: 443, comm: "npm", timeSec: T + 1 }), npm);
  ledger.add(
    connectEvent({ daddr: "203.0.113.9", dport: 443, comm: EVIL_COMM, pid: 666, timeSec: T + 2 }),
    evil,
  );
  ledger.add(
    podConnectEvent("shop", EVIL_POD, "app", {
      daddr: "10.1.2.3",
      dport: 22,
      comm: "ssh",
      error: "ECONNREFUSED",
      timeSec: T + 3,
      timeNsec: 250_000_000,
    }),
  );
  ledger.add(
    connectEvent({ daddr: "2001:db8::5", ipversion: 6, dport: 8443, comm: "curl", timeSec: T + 4 }),
  );
  const baseline = {
    rules: parsePolicyFile(
      `rules:\n  - allow: ["registry.npmjs.org:443", "pypi.org:443"]\n`,
      "baseline.yaml",
    ),
  };
  return egressOutcome(ledger, {
    lostEvents: 3,
    allowLost: false,
    commandStatus: 0,
    baseline: { file: "baseline.yaml", policy: baseline },
  });
}

Deno.test("egress reports: the stderr table, escaped", () => {
  const outcome = hostileOutcome();
  const table = egressTable(outcome);
  assertEquals(activeCharacter(table), undefined, table);
  const lines = table.split("\n").slice(0, -1);
  // Every line is one of the report's own: nothing from the traced system starts one.
  for (const line of lines) {
    assertMatch(
      line,
      /^(tcpgadget: egress: |VERDICT |VIOLATION |allowed |expected |baseline | {2}[+-] )/,
    );
  }
  assertEquals(
    lines[0],
    "tcpgadget: egress: 4 destinations, 3 violations; expectations: 0 met, 1 not met",
  );
  const rows = lines.slice(1, 6).map((line) => line.split(/  +/));
  assertEquals(rows, [
    [
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
    ],
    [
      "VIOLATION",
      "no rule",
      "a\\u202eexe.example\\r\\n%0A::warning::pwned <b>|</b>",
      "dns",
      "203.0.113.9",
      "443",
      "ev|l*\\x1b]0;t\\x07\\n::error::x",
      "1",
      "0",
      "05:46:42.000",
    ],
    [
      "VIOLATION",
      "deny 10.0.0.0/8:22",
      "-",
      "-",
      "10.1.2.3",
      "22",
      "shop/web-0\\u009b2J`x`/app (ssh)",
      "1",
      "1 ECONNREFUSED",
      "05:46:43.250",
    ],
    ["VIOLATION", "no rule", "-", "-", "2001:db8::5", "8443", "curl", "1", "0", "05:46:44.000"],
    [
      "allowed",
      "allow registry.npmjs.org:443",
      "registry.npmjs.org",
      "dns",
      "104.16.0.35",
      "443",
      "npm",
      "2",
      "0",
      "05:46:40.000",
    ],
  ]);
  assertEquals(lines.slice(6), [
    "expected expect db.internal:5432: NOT MET (no established connection matched it)",
    "baseline baseline.yaml: 3 added, 1 removed",
    "  + a\\u202eexe.example\\r\\n%0A::warning::pwned <b>|</b> (dns) 203.0.113.9:443 by ev|l*\\x1b]0;t\\x07\\n::error::x",
    "  + 10.1.2.3:22 by shop/web-0\\u009b2J`x`/app (ssh)",
    "  + [2001:db8::5]:8443 by curl",
    "  - allow pypi.org:443 [baseline.yaml:2]",
    "tcpgadget: egress: 3 events lost: the run cannot vouch for what it did not see (--allow-lost to accept)",
    "tcpgadget: egress: FAILED: 3 destinations broke the policy, 1 expectation not met, 3 events lost",
  ]);
});

Deno.test("egress reports: a passing run says so, and nothing else fails it", () => {
  const ledger = new EgressLedger(
    loadPolicy([{ kind: "rule", action: "allow", text: "@loopback" }]),
  );
  ledger.add(connectEvent({ daddr: "127.0.0.1", dport: 8080 }));
  const outcome = egressOutcome(ledger, { lostEvents: 2, allowLost: true, commandStatus: 0 });
  assertEquals(outcome.exitStatus, 0);
  const table = egressTable(outcome);
  assertMatch(table, /2 events lost: accepted \(--allow-lost\)\ntcpgadget: egress: PASSED\n$/);
});

Deno.test("egress reports: the JSON summary holds the exact values, with no active character in its text", () => {
  const text = summaryJson(hostileOutcome());
  assertEquals(activeCharacter(text), undefined, "an active character in the JSON text");
  const summary: Summary = JSON.parse(text);
  assertEquals(
    [
      summary.version,
      summary.passed,
      summary.exitStatus,
      summary.lostEvents,
      summary.commandStatus,
    ],
    [1, false, 3, 3, 0],
  );
  assertEquals(summary.rules.map((r) => [r.number, r.action, r.rule, r.origin, r.matched]), [
    [1, "allow", "registry.npmjs.org:443", "--allow", 2],
    [2, "deny", "10.0.0.0/8:22", "--deny", 1],
    [3, "allow", "@private", "--allow", 0],
    [4, "expect", "db.internal:5432", "--expect", 0],
  ]);
  assertEquals(summary.expectations, [{
    rule: 4,
    text: "db.internal:5432",
    met: false,
    connections: 0,
  }]);
  const evil = summary.destinations[0];
  assertEquals(evil, {
    verdict: "violation",
    rule: null,
    host: EVIL_NAME,
    hostSource: "dns",
    cnames: [EVIL_NAME, "c.evil.net"],
    address: "203.0.113.9",
    ipVersion: 4,
    port: 443,
    who: { node: "node-a", namespace: "", pod: "", container: "", command: EVIL_COMM, pid: 666 },
    count: 1,
    failed: 0,
    errors: [],
    first: "2025-12-06T05:46:42.000Z",
  });
  assertEquals(summary.destinations[1].who.pod, EVIL_POD);
  assertEquals(summary.destinations[1].rule, 2);
  assertEquals(summary.baseline?.added.length, 3);
  assertEquals(summary.baseline?.removed, [
    { action: "allow", rule: "pypi.org:443", scope: {}, origin: "baseline.yaml:2" },
  ]);
});

const junit = await pythonPackages(["junitparser==5.0.3"]);
if (junit.skip) {
  console.warn(`SKIPPED (egress_reports_test.ts, JUnit read by junitparser): ${junit.skip}`);
}

Deno.test({
  name: "egress reports: JUnit XML read by a real JUnit consumer (junitparser)",
  ignore: junit.skip !== undefined,
  async fn() {
    const xml = junitXml(hostileOutcome());
    const script = `
import json, sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromstring(sys.stdin.read())
suites = []
for suite in xml:
    cases = []
    for case in suite:
        failures = [r for r in case.result if isinstance(r, Failure)]
        cases.append({
            "classname": case.classname,
            "name": case.name,
            "failure": [failures[0].type, failures[0].message, failures[0].text] if failures else None,
            "out": case.system_out,
        })
    suites.append({"name": suite.name, "tests": suite.tests, "failures": suite.failures, "cases": cases})
print(json.dumps({"tests": xml.tests, "failures": xml.failures, "errors": xml.errors, "suites": suites}))
`;
    const read = JSON.parse(await runPython(junit.path!, script, xml));
    assertEquals([read.tests, read.failures, read.errors], [9, 5, 0]);
    assertEquals(
      read.suites.map((
        s: { name: string; tests: number; failures: number },
      ) => [s.name, s.tests, s.failures]),
      [["egress.rules", 4, 0], ["egress.expectations", 1, 1], ["egress.violations", 3, 3], [
        "egress.events",
        1,
        1,
      ]],
    );
    assertEquals(read.suites[0].cases[0], {
      classname: "egress.rules",
      name: "#1 allow registry.npmjs.org:443 [--allow]",
      failure: null,
      out: "allowed 2 connection attempts",
    });
    assertEquals(read.suites[1].cases[0].failure.slice(0, 2), [
      "unmet-expectation",
      "expectation not met: no established connection matched it",
    ]);
    const [evil, denied, noName] = read.suites[2].cases;
    assertEquals(
      evil.name,
      "a\\u202eexe.example\\r\\n%0A::warning::pwned <b>|</b> (dns) 203.0.113.9:443 by ev|l*\\x1b]0;t\\x07\\n::error::x",
    );
    assertEquals(evil.failure.slice(0, 2), ["violation", "no rule allows it"]);
    assertMatch(
      evil.failure[2],
      /attempts: 1 \(0 failed\)\nfirst: 2025-12-06T05:46:42\.000Z \(pid 666, node node-a\)\nCNAME chain: a\\u202eexe/,
    );
    assertEquals(denied.failure[1], "denied by rule #2: deny 10.0.0.0/8:22 [--deny]");
    assertEquals(noName.name, "[2001:db8::5]:8443 by curl");
    assertEquals(read.suites[3].cases[0].failure[0], "lost-events");
  },
});

Deno.test("egress reports: JUnit of a passing run has no failure", () => {
  const ledger = new EgressLedger(loadPolicy([{ kind: "rule", action: "allow", text: "*" }]));
  ledger.add(connectEvent({}));
  const xml = junitXml(egressOutcome(ledger, { lostEvents: 0, allowLost: false }));
  assertMatch(xml, /<testsuites name="tcpgadget egress" tests="3" failures="0" errors="0">/);
  assertMatch(
    xml,
    /<testcase classname="egress.violations" name="no destination broke the policy">/,
  );
});

Deno.test("egress reports: GitHub annotations are one workflow command each, escaped", () => {
  const annotations = errorAnnotations(hostileOutcome());
  assertEquals(annotations, [
    "::error title=tcpgadget egress%3A violation::a\\u202eexe.example\\r\\n%250A::warning::pwned <b>|</b> (dns) 203.0.113.9:443 by ev|l*\\x1b]0;t\\x07\\n::error::x: no rule allows it (1 attempt)",
    "::error title=tcpgadget egress%3A violation::10.1.2.3:22 by shop/web-0\\u009b2J`x`/app (ssh): denied by deny 10.0.0.0/8:22 (1 attempt)",
    "::error title=tcpgadget egress%3A violation::[2001:db8::5]:8443 by curl: no rule allows it (1 attempt)",
    "::error title=tcpgadget egress%3A expectation not met::expect db.internal:5432: no established connection matched it",
    "::error title=tcpgadget egress%3A events lost::3 events lost: the run cannot vouch for what it did not see (--allow-lost to accept)",
  ]);
  for (const line of annotations) {
    assertEquals([activeCharacter(line), line.includes("\n")], [undefined, false], line);
  }
});

Deno.test("egress reports: at most 10 annotations, the last counting the rest", () => {
  const ledger = new EgressLedger(loadPolicy([]));
  for (let port = 1; port <= 25; port++) ledger.add(connectEvent({ dport: port }));
  const annotations = errorAnnotations(egressOutcome(ledger, { lostEvents: 0, allowLost: false }));
  assertEquals(annotations.length, 10);
  assertEquals(
    annotations[9],
    "::error title=tcpgadget egress::and 16 more failures: see the step summary",
  );
});

const markdown = await pythonPackages(["markdown-it-py==4.3.0"]);
if (markdown.skip) {
  console.warn(
    `SKIPPED (egress_reports_test.ts, step summary rendered by markdown-it-py): ${markdown.skip}`,
  );
}

Deno.test({
  name:
    "egress reports: the step summary renders as a table whose cells show the strings literally",
  ignore: markdown.skip !== undefined,
  async fn() {
    const outcome = hostileOutcome();
    const dir = Deno.makeTempDirSync({ prefix: "tcpgadget-egress-gha-" });
    try {
      const summaryFile = `${dir}/step_summary.md`;
      Deno.writeTextFileSync(summaryFile, "earlier step\n");
      let commands = "";
      const env = new Map([["GITHUB_ACTIONS", "true"], ["GITHUB_STEP_SUMMARY", summaryFile]]);
      const wrote = await publishToGithubActions(outcome, {
        env: { get: (name) => env.get(name) },
        writeCommands: (text) => {
          commands += text;
          return Promise.resolve();
        },
      });
      assert(wrote);
      assertEquals(commands, errorAnnotations(outcome).join("\n") + "\n");
      const written = Deno.readTextFileSync(summaryFile);
      assertEquals(written, "earlier step\n" + stepSummaryMarkdown(outcome) + "\n");
      // Rendered as GitHub does (CommonMark with GFM tables): the cells, as text.
      const script = `
import json, sys, html.parser
from markdown_it import MarkdownIt
rendered = MarkdownIt("commonmark").enable("table").render(sys.stdin.read())
class Cells(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.tables = []; self.tags = set(); self.cell = None
    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "table": self.tables.append([])
        elif tag == "tr": self.tables[-1].append([])
        elif tag in ("td", "th"): self.cell = ""
    def handle_endtag(self, tag):
        if tag in ("td", "th"): self.tables[-1][-1].append(self.cell); self.cell = None
    def handle_data(self, data):
        if self.cell is not None: self.cell += data
parser = Cells(); parser.feed(rendered)
print(json.dumps({"tables": parser.tables, "tags": sorted(parser.tags)}))
`;
      const { tables, tags } = JSON.parse(
        await runPython(markdown.path!, script, stepSummaryMarkdown(outcome)),
      );
      // Only the report's own markup: no link, image, emphasis or HTML from a string.
      assertEquals(tags, [
        "h3",
        "li",
        "p",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
      ]);
      assertEquals(tables[0][1], [
        "❌ violation",
        "no rule",
        "a\\u202eexe.example\\r\\n%0A::warning::pwned <b>|</b>",
        "dns",
        "203.0.113.9",
        "443",
        "ev|l*\\x1b]0;t\\x07\\n::error::x",
        "1",
        "0",
        "2025-12-06T05:46:42.000Z",
      ]);
      assertEquals(tables[0][2][6], "shop/web-0\\u009b2J`x`/app (ssh)");
      assertEquals(tables[0].length, 5);
      assertEquals(tables[1], [["Expectation", "Result"], [
        "expect db.internal:5432",
        "❌ not met",
      ]]);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("egress reports: nothing is published outside GitHub Actions", async () => {
  let called = false;
  const wrote = await publishToGithubActions(hostileOutcome(), {
    env: { get: () => undefined },
    writeCommands: () => {
      called = true;
      return Promise.resolve();
    },
  });
  assertEquals([wrote, called], [false, false]);
});

Deno.test("egress reports: the baseline's changes: destinations it does not allow, its rules unused", () => {
  const outcome = hostileOutcome();
  const diff = baselineDiff(
    "b.yaml",
    { rules: parsePolicyFile("rules: []\n", "b.yaml") },
    outcome.destinations,
  );
  assertEquals(diff.added.length, outcome.destinations.length);
  assertEquals(diff.removed, []);
  assertEquals(
    outcome.baseline?.added.map((d) => `${d.address}:${d.port}`),
    ["203.0.113.9:443", "10.1.2.3:22", "2001:db8::5:8443"],
  );
});
