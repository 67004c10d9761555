/** Judging connect attempts, aggregating them by destination, expectations, and the exit status. */

import type { DestinationName } from "../core/destination_name.ts";
import { EgressLedger } from "../cli/egress/egress_ledger.ts";
import { egressOutcome } from "../cli/egress/egress_outcome.ts";
import { egressExitStatus, type ExitFacts } from "../cli/egress/exit_status.ts";
import { loadPolicy, type PolicySource } from "../cli/egress/policy.ts";
import { parsePolicyFile } from "../cli/egress/policy_file.ts";
import { assertEquals } from "./helpers/assert.ts";
import { connectEvent, podConnectEvent } from "./helpers/connect_event.ts";

const dns = (name: string, chain?: string[]): DestinationName =>
  chain ? { name, source: "dns", chain } : { name, source: "dns" };

function ledgerOf(...rules: ["allow" | "deny" | "expect", string][]) {
  const sources: PolicySource[] = rules.map(([action, text]) => ({ kind: "rule", action, text }));
  return new EgressLedger(loadPolicy(sources));
}

Deno.test("egress verdict: failed attempts count; a failed connect to an allowed destination is no violation", () => {
  const ledger = ledgerOf(["allow", "registry.npmjs.org:443"]);
  const npm = dns("registry.npmjs.org");
  // Refused and timed out, to a forbidden address: violations.
  ledger.add(connectEvent({ daddr: "203.0.113.9", dport: 443, error: "ECONNREFUSED" }));
  ledger.add(
    connectEvent({ daddr: "203.0.113.9", dport: 443, error: "ETIMEDOUT", timeSec: 1_765_000_001 }),
  );
  // Refused, to the allowed name: allowed.
  ledger.add(connectEvent({ daddr: "104.16.0.35", dport: 443, error: "ECONNREFUSED" }), npm);
  ledger.add(connectEvent({ daddr: "104.16.0.35", dport: 443 }), npm);
  const outcome = egressOutcome(ledger, { lostEvents: 0, allowLost: false, commandStatus: 0 });
  assertEquals(
    outcome.destinations.map((d) => [d.verdict, d.address, d.count, d.failed, d.errors]),
    [
      ["violation", "203.0.113.9", 2, 2, ["ECONNREFUSED", "ETIMEDOUT"]],
      ["allowed", "104.16.0.35", 2, 1, ["ECONNREFUSED"]],
    ],
  );
  assertEquals([outcome.violations, outcome.exitStatus], [1, 3]);
});

Deno.test("egress verdict: a destination whose name is unknown is judged by address rules only", () => {
  const ledger = ledgerOf(["allow", "registry.npmjs.org:443"], ["allow", "198.51.100.0/24:443"]);
  assertEquals(ledger.add(connectEvent({ daddr: "104.16.0.35", dport: 443 }))?.allowed, false);
  assertEquals(
    ledger.add(connectEvent({ daddr: "198.51.100.3", dport: 443 }), dns("unknown.example"))?.index,
    1,
  );
  assertEquals(
    ledger.add(connectEvent({ daddr: "104.16.0.35", dport: 443 }), dns("registry.npmjs.org"))
      ?.index,
    0,
  );
});

Deno.test("egress verdict: only connect events are judged", () => {
  const ledger = ledgerOf(["allow", "*"]);
  for (const type of ["A", "X", "U"] as const) {
    assertEquals(ledger.add(connectEvent({ type })), undefined);
  }
  assertEquals(ledger.destinations(), []);
});

Deno.test("egress verdict: one row per distinct who, name, address and port; counts and first time", () => {
  const ledger = ledgerOf(["allow", "@private"], ["deny", "*"]);
  const t = 1_765_000_000;
  // Events of one destination, out of order across CPUs: first is the earliest.
  ledger.add(
    connectEvent({ daddr: "10.0.0.5", dport: 5432, comm: "psql", pid: 10, timeSec: t + 2 }),
  );
  ledger.add(
    connectEvent({
      daddr: "10.0.0.5",
      dport: 5432,
      comm: "psql",
      pid: 11,
      timeSec: t + 1,
      timeNsec: 5,
    }),
  );
  ledger.add(
    connectEvent({ daddr: "10.0.0.5", dport: 5432, comm: "psql", pid: 12, timeSec: t + 3 }),
  );
  // Other port, other command, other pod, other name: other rows.
  ledger.add(connectEvent({ daddr: "10.0.0.5", dport: 5433, comm: "psql", timeSec: t + 4 }));
  ledger.add(connectEvent({ daddr: "10.0.0.5", dport: 5432, comm: "pg_dump", timeSec: t + 5 }));
  ledger.add(
    podConnectEvent("shop", "web-0", "app", {
      daddr: "10.0.0.5",
      dport: 5432,
      comm: "psql",
      timeSec: t + 6,
    }),
  );
  ledger.add(
    connectEvent({ daddr: "10.0.0.5", dport: 5432, comm: "psql", timeSec: t + 7 }),
    dns("db.internal"),
  );
  ledger.add(
    connectEvent({ daddr: "93.184.216.34", dport: 80, comm: "curl", timeSec: t + 8 }),
    dns("example.com"),
  );
  const rows = ledger.destinations().map((d) => [
    d.verdict,
    d.ruleIndex,
    d.workload.pod ? `${d.workload.namespace}/${d.workload.pod}/${d.workload.container}` : "",
    d.workload.command,
    d.name?.name ?? "",
    d.address,
    d.port,
    d.count,
    d.firstSec - t,
    d.firstNsec,
    d.pid,
  ]);
  assertEquals(rows, [
    ["violation", 1, "", "curl", "example.com", "93.184.216.34", 80, 1, 8, 0, 4242],
    ["allowed", 0, "", "psql", "", "10.0.0.5", 5432, 3, 1, 5, 10],
    ["allowed", 0, "", "psql", "", "10.0.0.5", 5433, 1, 4, 0, 4242],
    ["allowed", 0, "", "pg_dump", "", "10.0.0.5", 5432, 1, 5, 0, 4242],
    ["allowed", 0, "shop/web-0/app", "psql", "", "10.0.0.5", 5432, 1, 6, 0, 4242],
    ["allowed", 0, "", "psql", "db.internal", "10.0.0.5", 5432, 1, 7, 0, 4242],
  ]);
  assertEquals(ledger.ruleMatches(), [7, 1]);
});

Deno.test("egress verdict: expectations are met by established connections only", () => {
  const ledger = ledgerOf(
    ["expect", "db.internal:5432"],
    ["expect", "cache.internal:6379"],
    ["expect", "10.9.9.9:80"],
  );
  ledger.add(connectEvent({ daddr: "10.0.0.5", dport: 5432 }), dns("db.internal"));
  ledger.add(connectEvent({ daddr: "10.0.0.5", dport: 5432 }), dns("db.internal"));
  // A refused connect to an expected destination does not meet it.
  ledger.add(
    connectEvent({ daddr: "10.0.0.6", dport: 6379, error: "ECONNREFUSED" }),
    dns("cache.internal"),
  );
  const outcome = egressOutcome(ledger, { lostEvents: 0, allowLost: false, commandStatus: 0 });
  assertEquals(
    outcome.expectations.map((e) => [e.ruleIndex, e.connections]),
    [[0, 2], [1, 0], [2, 0]],
  );
  assertEquals([outcome.violations, outcome.unmetExpectations, outcome.exitStatus], [0, 2, 3]);
  assertEquals(outcome.reasons, ["2 expectations not met"]);
});

Deno.test("egress verdict: scoped rules of a file apply to their pods, by labels when known", () => {
  const policy = {
    rules: parsePolicyFile(
      `rules:
  - allow: "db.shop.svc.cluster.local:5432"
    namespace: shop
    labels: {app: web}
  - allow: "10.96.0.10:53"
    pod: shop/web-0
    container: app
`,
      "p.yaml",
    ),
  };
  const ledger = new EgressLedger(policy);
  const db = dns("db.shop.svc.cluster.local");
  const web = { app: "web", "pod-template-hash": "7d4b9c" };
  const event = (pod: string, daddr: string, dport: number) =>
    podConnectEvent("shop", pod, "app", { daddr, dport });
  assertEquals(ledger.add(event("web-7d4b9c-xk2p", "10.96.4.4", 5432), db, web)?.allowed, true);
  assertEquals(
    ledger.add(event("web-7d4b9c-xk2p", "10.96.4.4", 5432), db)?.allowed,
    false,
    "labels unknown",
  );
  assertEquals(ledger.add(event("cart-0", "10.96.4.4", 5432), db, { app: "cart" })?.allowed, false);
  assertEquals(ledger.add(event("web-0", "10.96.0.10", 53))?.allowed, true);
  assertEquals(ledger.add(event("web-1", "10.96.0.10", 53))?.allowed, false);
});

Deno.test("egress exit status: every rule of the issue, in one table", () => {
  const base: ExitFacts = { violations: 0, unmetExpectations: 0, lostEvents: 0, allowLost: false };
  const table: [string, Partial<ExitFacts>, number][] = [
    ["watch, clean", {}, 0],
    ["run, COMMAND exits 0", { commandStatus: 0 }, 0],
    ["run, COMMAND exits 1", { commandStatus: 1 }, 1],
    ["run, COMMAND killed by SIGTERM", { commandStatus: 143 }, 143],
    ["a violation", { violations: 1, commandStatus: 0 }, 3],
    ["a violation, COMMAND failed too", { violations: 1, commandStatus: 1 }, 3],
    ["an unmet expectation", { unmetExpectations: 1, commandStatus: 0 }, 3],
    ["events lost", { lostEvents: 1, commandStatus: 0 }, 4],
    ["events lost, COMMAND failed", { lostEvents: 1, commandStatus: 1 }, 4],
    ["events lost, accepted", { lostEvents: 7, allowLost: true, commandStatus: 0 }, 0],
    [
      "events lost, accepted, COMMAND failed",
      { lostEvents: 7, allowLost: true, commandStatus: 5 },
      5,
    ],
    ["events lost and a violation", { lostEvents: 7, violations: 2 }, 3],
    ["events lost, accepted, and an unmet expectation", {
      lostEvents: 7,
      allowLost: true,
      unmetExpectations: 1,
    }, 3],
    ["usage error", { usageError: true, violations: 1, lostEvents: 1, commandStatus: 1 }, 2],
  ];
  for (const [what, facts, status] of table) {
    assertEquals(egressExitStatus({ ...base, ...facts }), status, what);
  }
});

Deno.test("egress verdict: consecutive attempts that differ in one field only are told apart", () => {
  const ledger = ledgerOf(["allow", "a.example"]);
  const event = connectEvent({ daddr: "192.0.2.7", dport: 443 });
  const verdicts = [
    ledger.add(event, dns("a.example")),
    ledger.add(event, dns("b.example")),
    ledger.add(event, { name: "b.example", source: "hosts" }),
    ledger.add(event),
    ledger.add({ ...event, comm: "wget" }),
    ledger.add({ ...event, comm: "wget", dport: 80 }),
    ledger.add({ ...event, comm: "wget", daddr: "192.0.2.8", dport: 80 }),
  ].map((v) => v?.allowed);
  assertEquals(verdicts, [true, false, false, false, false, false, false]);
  assertEquals(ledger.destinations().length, 7);
});
