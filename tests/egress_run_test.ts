/**
 * `tcpgadget egress run` end to end, as a CI job runs it: the command line,
 * the real BPF objects in the real kernel, a real DNS server (dnsmasq in a
 * network namespace this test makes) and a command (a python workload, in
 * that namespace with its own resolv.conf and hosts file) that resolves
 * allowed and forbidden names and connects over IPv4 and IPv6, leaves a
 * double-forked daemon that connects after it has exited, and makes a
 * connect that is refused. Every destination is asserted exactly (pid,
 * command, name and where it came from, CNAMEs, address, port, verdict,
 * deciding rule), and so are the exit statuses, the JUnit file (read by
 * junitparser), the summary, GitHub Actions' annotations and step summary,
 * the stop passed on to COMMAND, and lost events (tiny rings) failing the
 * run.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { DNSMASQ_SKIP_REASON } from "./helpers/dnsmasq.ts";
import { DnsWorld } from "./helpers/dns_world.ts";
import { needsBpf } from "./helpers/privileges.ts";
import { pythonPackages, runPython } from "./helpers/python_packages.ts";
import type { Summary } from "../cli/egress/summary_report.ts";

const FILE = "egress_run_test.ts";
const noBpf = needsBpf(FILE);
if (!noBpf && DNSMASQ_SKIP_REASON) {
  console.warn(`SKIPPED (${FILE}, real DNS): ${DNSMASQ_SKIP_REASON}`);
}
const ignore = noBpf || DNSMASQ_SKIP_REASON !== undefined;
const junit = ignore ? { skip: "not run" } : await pythonPackages(["junitparser==5.0.3"]);
if (!ignore && junit.skip) {
  console.warn(`SKIPPED (${FILE}, JUnit read by junitparser): ${junit.skip}`);
}

const WORKLOAD = new URL("./helpers/egress_workload.py", import.meta.url).pathname;

/** What the workload says it did, one record per connection. */
interface Done {
  step: string;
  pid: number;
  comm: string;
  name: string | null;
  address: string;
  port: number;
  sport: number;
  error: string | null;
}

/** The world of every test here: names, their addresses, a server on each. */
function world(): Promise<DnsWorld> {
  return DnsWorld.create({
    names: { "allowed.test": "11", "forbidden.test": "12", "target.test": "13" },
    cnames: { "alias.test": "target.test" },
    hosted: { "hosted.test": "14" },
  });
}

/** A temporary directory for a test's files. */
async function tempDir(): Promise<string & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-egress-run-" });
  return Object.assign(dir, {
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  }) as string & AsyncDisposable;
}

/**
 * The workload as COMMAND: in the world's network namespace, resolving with
 * its DNS server (the files tcpgadget was given by {@link egress}).
 */
function workload(w: DnsWorld, report: string, steps: string[]): string[] {
  return [...w.inside(), "python3", WORKLOAD, report, ...steps];
}

/** Runs `tcpgadget egress ARGS` where the world's files are /etc's. */
function egress(w: DnsWorld, args: string[], env?: Record<string, string>) {
  return CliRun.run(["egress", ...args], { wrapper: w.mounts("inside"), env });
}

function readDone(report: string): Done[] {
  try {
    return Deno.readTextFileSync(report).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

/** The summary's destinations without their times, in a stable order. */
function destinations(summary: Summary) {
  return summary.destinations.map(({ first: _, ...d }) => d).sort((a, b) =>
    `${a.who.command} ${a.address} ${a.port}` < `${b.who.command} ${b.address} ${b.port}` ? -1 : 1
  );
}

Deno.test({
  name:
    "egress run: names from DNS (A, AAAA, CNAME) and the hosts file, IPv4 and IPv6, a daemon after COMMAND, a refused connect; the reports",
  ignore,
  async fn() {
    await using w = await world();
    await using dir = await tempDir();
    const report = `${dir}/done.jsonl`;
    const stepSummary = `${dir}/step_summary.md`;
    const closed = 1; // nothing listens on port 1 in the namespace
    const args = [
      "run",
      "--deny",
      "target.test",
      "--allow",
      "allowed.test",
      "--allow",
      "alias.test",
      "--allow",
      `hosted.test:${w.port4}`,
      "--expect",
      `allowed.test:${w.port6}`,
      "--expect",
      "never.test:443",
      "--junit",
      `${dir}/egress.xml`,
      "--summary",
      `${dir}/summary.json`,
      "--",
      ...workload(w, report, [
        `name,allowed.test,4,${w.port4}`,
        `name,allowed.test,6,${w.port6}`,
        `name,forbidden.test,4,${w.port4}`,
        `name,alias.test,4,${w.port4}`,
        `name,hosted.test,4,${w.port4}`,
        `addr,${w.netns.nsAddress},${closed}`,
        `daemon,name,forbidden.test,6,${w.port6}`,
      ]),
    ];
    const result = await egress(w, args, {
      GITHUB_ACTIONS: "true",
      GITHUB_STEP_SUMMARY: stepSummary,
    });
    assertEquals(result.code, 3, result.stderr);
    const done = readDone(report);
    assertEquals(done.map((d) => [d.step, d.comm, d.error]), [
      [`name,allowed.test,4,${w.port4}`, "tg-egress", null],
      [`name,allowed.test,6,${w.port6}`, "tg-egress", null],
      [`name,forbidden.test,4,${w.port4}`, "tg-egress", null],
      [`name,alias.test,4,${w.port4}`, "tg-egress", null],
      [`name,hosted.test,4,${w.port4}`, "tg-egress", null],
      [`addr,${w.netns.nsAddress},${closed}`, "tg-egress", "ECONNREFUSED"],
      [`name,forbidden.test,6,${w.port6}`, "tg-eg-daemon", null],
    ]);
    const [main] = done;
    const daemon = done[6];
    assert(daemon.pid !== main.pid, "the daemon is a process of its own");

    const summary: Summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
    assertEquals([summary.passed, summary.exitStatus, summary.commandStatus], [false, 3, 0]);
    assertEquals(summary.reasons, ["4 destinations broke the policy", "1 expectation not met"]);
    assertEquals([summary.lostEvents, summary.lost, summary.stillRunning], [0, [], []]);
    const who = (d: Done) => ({
      node: Deno.hostname(),
      namespace: "",
      pod: "",
      container: "",
      command: d.comm,
      pid: d.pid,
    });
    const dns = (name: string, ...cnames: string[]) => ({
      host: name,
      hostSource: "dns",
      cnames: [name, ...cnames],
    });
    const destination = (
      d: Done,
      verdict: string,
      rule: number | null,
      name: Record<string, unknown>,
    ) => ({
      verdict,
      rule,
      ...name,
      address: d.address,
      ipVersion: d.address.includes(":") ? 6 : 4,
      port: d.port,
      who: who(d),
      count: 1,
      failed: d.error ? 1 : 0,
      errors: d.error ? [d.error] : [],
    });
    const none = { host: null, hostSource: null, cnames: [] };
    const expected = [
      destination(done[0], "allowed", 2, dns("allowed.test")),
      destination(done[1], "allowed", 2, dns("allowed.test")),
      destination(done[2], "violation", null, dns("forbidden.test")),
      // A deny matches every name of the chain: an alias does not get around it.
      destination(done[3], "violation", 1, dns("alias.test", "target.test")),
      destination(done[4], "allowed", 4, { host: "hosted.test", hostSource: "hosts", cnames: [] }),
      destination(done[5], "violation", null, none),
      destination(daemon, "violation", null, dns("forbidden.test")),
    ];
    assertEquals(destinations(summary), destinations({ destinations: expected } as Summary));
    assertEquals(
      [done[0].address, done[1].address, done[3].address],
      [w.address("allowed.test", 4), w.address("allowed.test", 6), w.address("target.test", 4)],
    );
    assertEquals(summary.expectations, [
      { rule: 5, text: `allowed.test:${w.port6}`, met: true, connections: 1 },
      { rule: 6, text: "never.test:443", met: false, connections: 0 },
    ]);
    assertEquals(summary.rules.map((r) => [r.action, r.rule, r.matched]), [
      ["deny", "target.test", 1],
      ["allow", "allowed.test", 2],
      ["allow", "alias.test", 0],
      ["allow", `hosted.test:${w.port4}`, 1],
      ["expect", `allowed.test:${w.port6}`, 0],
      ["expect", "never.test:443", 0],
    ]);

    // The table on stderr: one row per destination, the daemon's by its pid's command.
    assertMatch(
      result.stderr,
      /^tcpgadget: egress: 7 destinations, 4 violations; expectations: 1 met, 1 not met$/m,
    );
    assertMatch(
      result.stderr,
      new RegExp(
        `^VIOLATION +no rule +forbidden\\.test +dns +${
          w.address("forbidden.test", 6).replaceAll(".", "\\.")
        } +${w.port6} +tg-eg-daemon +1 +0 `,
        "m",
      ),
    );
    assertMatch(result.stderr, /^expected expect never\.test:443: NOT MET/m);
    assertMatch(
      result.stderr,
      /^tcpgadget: egress: FAILED: 4 destinations broke the policy, 1 expectation not met$/m,
    );

    // GitHub Actions: an annotation per violation and unmet expectation, on stdout.
    const annotations = result.stdout.split("\n").filter((l) => l.startsWith("::error"));
    assertEquals(annotations.length, 5);
    assert(
      annotations.includes(
        `::error title=tcpgadget egress%3A violation::alias.test (dns) ${
          w.address("target.test", 4)
        }:${w.port4} by tg-egress: denied by deny target.test (1 attempt)`,
      ),
      annotations.join("\n"),
    );
    const markdown = await Deno.readTextFile(stepSummary);
    assertMatch(markdown, /^### tcpgadget egress: ❌ failed: 4 destinations broke the policy/);
    // The destinations (a header, a separator, 7 rows), the expectations (the same, 2 rows).
    assertEquals(markdown.split("\n").filter((l) => l.startsWith("| ")).length, 2 + 7 + 2 + 2);

    // The JUnit file, as a CI test reporter reads it.
    if (junit.skip === undefined) {
      const script = `
import json, sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.readline().strip())
print(json.dumps({"tests": xml.tests, "failures": xml.failures,
  "suites": [[s.name, s.tests, s.failures, [[c.name, [r.message for r in c.result if isinstance(r, Failure)]] for c in s]] for s in xml]}))
`;
      const read = JSON.parse(await runPython(junit.path!, script, `${dir}/egress.xml\n`));
      assertEquals([read.tests, read.failures], [13, 5]);
      assertEquals(read.suites.map((s: unknown[]) => s.slice(0, 3)), [
        ["egress.rules", 6, 0],
        ["egress.expectations", 2, 1],
        ["egress.violations", 4, 4],
        ["egress.events", 1, 0],
      ]);
      const violations = new Map(read.suites[2][3]);
      assertEquals(
        violations.get(`${w.netns.nsAddress}:${closed} by tg-egress`),
        ["no rule allows it"],
      );
      assertEquals(
        violations.get(
          `forbidden.test (dns) [${w.address("forbidden.test", 6)}]:${w.port6} by tg-eg-daemon`,
        ),
        ["no rule allows it"],
      );
    }
  },
});

Deno.test({
  name: "egress run: every exit status: 0, COMMAND's own, 2 (nothing runs), 3, 4 (lost events)",
  ignore,
  async fn() {
    await using w = await world();
    await using dir = await tempDir();
    const allowed = `name,allowed.test,4,${w.port4}`;
    const run = async (flags: string[], steps: string[], env?: Record<string, string>) => {
      const report = `${dir}/done-${crypto.randomUUID()}.jsonl`;
      const result = await egress(w, ["run", ...flags, "--", ...workload(w, report, steps)], env);
      return { ...result, done: readDone(report) };
    };
    // Everything allowed: COMMAND's own status.
    const passed = await run(["--allow", "allowed.test"], [allowed]);
    assertEquals(passed.code, 0, passed.stderr);
    assertMatch(passed.stderr, /^tcpgadget: egress: PASSED$/m);
    const own = await run(["--allow", "allowed.test"], [allowed, "exit,7"]);
    assertEquals(own.code, 7, own.stderr);
    assertEquals(own.done.length, 1);
    // A violation outranks COMMAND's status.
    const violated = await run(["--allow", "forbidden.test"], [allowed, "exit,7"]);
    assertEquals(violated.code, 3, violated.stderr);
    // A mistake in the policy: one line, status 2, and COMMAND never runs.
    const usage = await run(["--allow", "allowed.test:99999"], [allowed]);
    assertEquals([usage.code, usage.stderr, usage.done], [
      2,
      'tcpgadget: --allow "allowed.test:99999": port 99999 is out of range (1-65535)\n',
      [],
    ]);

    // Lost events (rings of one page, a burst of refused connects): status 4,
    // said in the report; --allow-lost gives COMMAND's status back.
    const burst = `burst,${w.netns.nsAddress},1,3000`;
    const tiny = { TCPGADGET_RING_BYTES: "4096" };
    const lost = await run(["--allow", "*"], [burst, "exit,5"], tiny);
    assertEquals(lost.code, 4, lost.stderr);
    assertEquals(lost.done.map((d) => d.step), [burst]);
    assertMatch(
      lost.stderr,
      /^tcpgadget: egress: \d+ events lost \(\d+ events \(ring buffer full\)\): the run cannot vouch for what it did not see \(--allow-lost to accept\)$/m,
    );
    assertMatch(lost.stderr, /^tcpgadget: egress: FAILED: \d+ events lost$/m);
    const accepted = await run(["--allow", "*", "--allow-lost"], [burst, "exit,5"], tiny);
    assertEquals(accepted.code, 5, accepted.stderr);
    assertMatch(accepted.stderr, /events lost .*: accepted \(--allow-lost\)$/m);
  },
});

Deno.test({
  name: "egress run: SIGTERM is passed on to COMMAND, and the run ends with it, with the report",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const started = `${dir}/started`;
    // COMMAND says it runs, then waits; SIGTERM ends it (status 143).
    const run = CliRun.start([
      "egress",
      "run",
      "--allow",
      "@loopback",
      "--",
      "sh",
      "-c",
      `touch ${started} && exec sleep 60`,
    ]);
    const deadline = performance.now() + 30_000;
    while (!(await exists(started)) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    run.child.kill("SIGTERM");
    const status = await run.finish();
    assertEquals(status.code, 143, run.stderr);
    assertMatch(run.stderr, /^tcpgadget: egress: 0 destinations, 0 violations$/m);
    assertMatch(run.stderr, /^tcpgadget: egress: PASSED$/m);
  },
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "egress record, then run: the recorded policy passes the same workload; a changed one fails naming its new destination, and --baseline says what changed",
  ignore,
  async fn() {
    await using w = await world();
    await using dir = await tempDir();
    const policy = `${dir}/recorded.yaml`;
    const steps = [
      `name,allowed.test,6,${w.port6}`,
      `name,hosted.test,4,${w.port4}`,
      `addr,${w.netns.nsAddress},${w.port4}`,
    ];
    const recorded = await egress(w, [
      "record",
      "-o",
      policy,
      "--",
      ...workload(w, `${dir}/recorded.jsonl`, steps),
    ]);
    assertEquals(recorded.code, 0, recorded.stderr);
    assertEquals(
      recorded.stderr,
      `tcpgadget: egress record: 3 destinations written to ${policy}\n`,
    );
    // By name where known (DNS, hosts file), else by address; ports; for everyone.
    assertEquals(
      (await Deno.readTextFile(policy)).split("\n").slice(1).join("\n"),
      [
        "",
        "version: 1",
        "rules:",
        "  - allow:",
        `      - "allowed.test:${w.port6}"`,
        `      - "hosted.test:${w.port4}"`,
        `      - "${w.netns.nsAddress}:${w.port4}"`,
        "",
      ].join("\n"),
    );

    const same = await egress(w, [
      "run",
      "--policy",
      policy,
      "--",
      ...workload(w, `${dir}/same.jsonl`, steps),
    ]);
    assertEquals(same.code, 0, same.stderr);
    assertMatch(same.stderr, /^tcpgadget: egress: 3 destinations, 0 violations$/m);

    // A new destination, and one no longer reached.
    const changed = await egress(w, [
      "run",
      "--policy",
      policy,
      "--baseline",
      policy,
      "--",
      ...workload(w, `${dir}/changed.jsonl`, [
        steps[0],
        steps[2],
        `name,forbidden.test,6,${w.port6}`,
      ]),
    ]);
    assertEquals(changed.code, 3, changed.stderr);
    const forbidden = `forbidden.test (dns) [${
      w.address("forbidden.test", 6)
    }]:${w.port6} by tg-egress`;
    assertMatch(
      changed.stderr,
      new RegExp(
        `^VIOLATION +no rule +forbidden\\.test +dns +${w.address("forbidden.test", 6)} `,
        "m",
      ),
    );
    assert(
      changed.stderr.includes(
        `baseline ${policy}: 1 added, 1 removed\n  + ${forbidden}\n  - allow hosted.test:${w.port4} [${policy}:7]\n`,
      ),
      changed.stderr,
    );
    assertMatch(changed.stderr, /^tcpgadget: egress: FAILED: 1 destination broke the policy$/m);
  },
});

Deno.test({
  name:
    "egress run: a process COMMAND started that is still running after the grace is listed by pid and command",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const pidFile = `${dir}/pid`;
    const result = await CliRun.run([
      "egress",
      "run",
      "--grace",
      "0.2",
      "--summary",
      `${dir}/summary.json`,
      "--",
      "sh",
      "-c",
      `setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $! > ${pidFile}`,
    ]);
    const pid = Number(await Deno.readTextFile(pidFile));
    try {
      assertEquals(result.code, 0, result.stderr);
      assert(
        result.stderr.includes(
          `still running when the run ended (their later connections are not judged): pid ${pid} sleep\n`,
        ),
        result.stderr,
      );
      const summary: Summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
      assertEquals(summary.stillRunning, [{ pid, command: "sleep" }]);
    } finally {
      Deno.kill(pid, "SIGKILL");
    }
  },
});
