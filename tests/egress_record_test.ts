/**
 * `egress record`: the recorded policy reads back and passes on the same
 * events; a changed workload fails, naming the new destination; the
 * NetworkPolicy and CiliumNetworkPolicy outputs.
 */

import { parseAllDocuments } from "yaml";
import { ObjectSerializer } from "@kubernetes/client-node/dist/gen/models/ObjectSerializer.js";
import type { DestinationName } from "../core/destination_name.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import { ciliumPolicies, ciliumPolicyText } from "../cli/egress/cilium_policy.ts";
import { EgressLedger } from "../cli/egress/egress_ledger.ts";
import { egressOutcome } from "../cli/egress/egress_outcome.ts";
import { networkPolicies, networkPolicyText } from "../cli/egress/network_policy.ts";
import { parsePolicyFile } from "../cli/egress/policy_file.ts";
import { recordText } from "../cli/egress/record.ts";
import { egressTable } from "../cli/egress/report_table.ts";
import { activeCharacter } from "./helpers/active_characters.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { connectEvent, podConnectEvent } from "./helpers/connect_event.ts";

type Seen = [TraceEvent, DestinationName?, Record<string, string>?];

const dns = (name: string): DestinationName => ({ name, source: "dns" });

/** A build step: npm through DNS, a mirror from /etc/hosts, raw addresses, a refused connect. */
function buildStep(): Seen[] {
  return [
    [connectEvent({ comm: "npm", daddr: "104.16.0.35", dport: 443 }), dns("registry.npmjs.org")],
    [connectEvent({ comm: "npm", daddr: "104.16.1.35", dport: 443 }), dns("registry.npmjs.org")],
    [connectEvent({ comm: "npm", daddr: "104.16.0.35", dport: 443 }), dns("registry.npmjs.org")],
    [
      connectEvent({ comm: "git", daddr: "2606:50c0:8000::154", dport: 443 }),
      dns("codeload.github.com"),
    ],
    [connectEvent({ comm: "pip", daddr: "10.20.0.5", dport: 3128 }), {
      name: "mirror.internal",
      source: "hosts",
    }],
    [connectEvent({ comm: "node", daddr: "127.0.0.1", dport: 8080 })],
    [connectEvent({ comm: "node", daddr: "2001:db8::9", dport: 9000, error: "ECONNREFUSED" })],
    // A name no rule can hold: recorded by its address.
    [connectEvent({ comm: "curl", daddr: "198.51.100.4", dport: 80 }), dns("weird name.example")],
  ];
}

function judgeAll(policyText: string, seen: Seen[]) {
  const ledger = new EgressLedger({ rules: parsePolicyFile(policyText, "recorded.yaml") });
  for (const [event, name, labels] of seen) ledger.add(event, name, labels);
  return egressOutcome(ledger, { lostEvents: 0, allowLost: false, commandStatus: 0 });
}

function record(
  seen: Seen[],
  perWorkload: boolean,
  format: "policy" | "networkpolicy" | "cilium" = "policy",
) {
  const ledger = new EgressLedger({ rules: [] });
  for (const [event, name, labels] of seen) ledger.add(event, name, labels);
  return recordText(ledger.destinations(), format, { perWorkload }, "recorded by a test");
}

Deno.test("egress record: a command's policy, by name where known, passes on the same workload", () => {
  const text = record(buildStep(), false);
  assertEquals(
    text,
    `# recorded by a test

version: 1
rules:
  - allow:
      - "codeload.github.com:443"
      - "mirror.internal:3128"
      - "registry.npmjs.org:443"
      - "127.0.0.1:8080"
      - "198.51.100.4:80"
      - "[2001:db8::9]:9000"
`,
  );
  // No source port made it into a rule.
  for (const [event] of buildStep()) assert(!text.includes(String(event.sport)));
  const outcome = judgeAll(text, buildStep());
  assertEquals(outcome.destinations.map((d) => d.verdict), Array(8 - 1).fill("allowed"));
  assertEquals(outcome.exitStatus, 0);
});

Deno.test("egress record: a changed workload fails, naming the new destination", () => {
  const text = record(buildStep(), false);
  const changed: Seen[] = [
    ...buildStep(),
    // New address of a recorded name: still allowed (the rule is by name).
    [connectEvent({ comm: "npm", daddr: "104.16.2.35", dport: 443 }), dns("registry.npmjs.org")],
    // New: a name never seen, on a recorded address's port.
    [
      connectEvent({ comm: "npm", daddr: "185.199.108.133", dport: 443, pid: 777 }),
      dns("evil.example"),
    ],
    // Recorded name, other port.
    [connectEvent({ comm: "npm", daddr: "104.16.0.35", dport: 80 }), dns("registry.npmjs.org")],
  ];
  const outcome = judgeAll(text, changed);
  assertEquals(outcome.exitStatus, 3);
  assertEquals(
    outcome.destinations.filter((d) => d.verdict === "violation").map((d) =>
      `${d.name?.name} ${d.address}:${d.port} ${d.workload.command} ${d.pid}`
    ),
    ["evil.example 185.199.108.133:443 npm 777", "registry.npmjs.org 104.16.0.35:80 npm 4242"],
  );
  assertMatch(
    egressTable(outcome),
    /^VIOLATION +no rule +evil\.example +dns +185\.199\.108\.133 +443 +npm /m,
  );
});

/** Pods of a cluster: two replicas of a deployment, a pod whose labels are unknown, a host process. */
function cluster(): Seen[] {
  const web1 = { app: "web", "pod-template-hash": "7d4b9c" };
  const web2 = { app: "web", "pod-template-hash": "7d4b9c" };
  return [
    [
      podConnectEvent("shop", "web-7d4b9c-xk2p", "app", {
        comm: "node",
        daddr: "10.96.4.4",
        dport: 5432,
      }),
      dns("db.shop.svc.cluster.local"),
      web1,
    ],
    [
      podConnectEvent("shop", "web-7d4b9c-q9wz", "app", {
        comm: "node",
        daddr: "10.96.4.4",
        dport: 5432,
      }),
      dns("db.shop.svc.cluster.local"),
      web2,
    ],
    [
      podConnectEvent("shop", "web-7d4b9c-q9wz", "app", {
        comm: "node",
        daddr: "104.16.0.35",
        dport: 443,
      }),
      dns("api.stripe.com"),
      web2,
    ],
    [
      podConnectEvent("shop", "web-7d4b9c-q9wz", "envoy", {
        comm: "envoy",
        daddr: "10.96.0.1",
        dport: 443,
      }),
      undefined,
      web2,
    ],
    [podConnectEvent("batch", "report-0", "main", {
      comm: "python3",
      daddr: "10.96.9.9",
      dport: 8080,
    })],
    [connectEvent({ comm: "kubelet", daddr: "10.0.0.1", dport: 6443 })],
  ];
}

Deno.test("egress record: in cluster mode, rules per workload: pod labels (else name), container, or command", () => {
  const text = record(cluster(), true);
  const rules = parsePolicyFile(text, "recorded.yaml");
  assertEquals(
    rules.map((r) => [r.action, r.destination.kind, r.scope]),
    [
      ["allow", "block", { command: "kubelet" }],
      ["allow", "block", { namespace: "batch", pod: "report-0", container: "main" }],
      ["allow", "host", { namespace: "shop", labels: { app: "web" }, container: "app" }],
      ["allow", "host", { namespace: "shop", labels: { app: "web" }, container: "app" }],
      ["allow", "block", { namespace: "shop", labels: { app: "web" }, container: "envoy" }],
    ],
  );
  assertMatch(text, /# pods seen: shop\/web-7d4b9c-q9wz, shop\/web-7d4b9c-xk2p\n/);
  assertEquals(judgeAll(text, cluster()).exitStatus, 0);
  // A new replica (another name, the same labels) passes; another workload does not.
  const later: Seen[] = [
    [
      podConnectEvent("shop", "web-5f6d8-abcd", "app", {
        comm: "node",
        daddr: "10.96.4.5",
        dport: 5432,
      }),
      dns("db.shop.svc.cluster.local"),
      { app: "web", "pod-template-hash": "5f6d8" },
    ],
    [
      podConnectEvent("shop", "cart-0", "app", { comm: "node", daddr: "10.96.4.4", dport: 5432 }),
      dns("db.shop.svc.cluster.local"),
      { app: "cart" },
    ],
    [connectEvent({ comm: "curl", daddr: "10.0.0.1", dport: 6443 })],
  ];
  const outcome = judgeAll(text, later);
  assertEquals(
    outcome.destinations.map((d) => `${d.verdict} ${d.workload.pod || d.workload.command}`),
    ["violation cart-0", "violation curl", "allowed web-5f6d8-abcd"],
  );
});

/** The object after a round trip through the Kubernetes API's model: unknown fields dropped. */
function throughApiModel(object: unknown, type: string): unknown {
  const model = ObjectSerializer.deserialize(object, type, "");
  return JSON.parse(JSON.stringify(ObjectSerializer.serialize(model, type, "")));
}

Deno.test("egress record: NetworkPolicy objects per pod selector, fields of the Kubernetes API", () => {
  const ledger = new EgressLedger({ rules: [] });
  for (const [event, name, labels] of cluster()) ledger.add(event, name, labels);
  const policies = networkPolicies(ledger.destinations());
  assertEquals(policies.length, 1);
  const [web] = policies;
  for (const policy of policies) {
    assertEquals(throughApiModel(policy, "V1NetworkPolicy"), JSON.parse(JSON.stringify(policy)));
  }
  assertEquals(web.metadata, {
    name: "tcpgadget-egress-web",
    namespace: "shop",
    labels: { "app.kubernetes.io/managed-by": "tcpgadget" },
  });
  assertEquals(web.spec.podSelector, { matchLabels: { app: "web" } });
  assertEquals(web.spec.policyTypes, ["Egress"]);
  assertEquals(web.spec.egress, [
    {
      to: [{ ipBlock: { cidr: "10.96.0.1/32" } }, { ipBlock: { cidr: "104.16.0.35/32" } }],
      ports: [{ protocol: "TCP", port: 443 }],
    },
    { to: [{ ipBlock: { cidr: "10.96.4.4/32" } }], ports: [{ protocol: "TCP", port: 5432 }] },
    { ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] },
  ]);
  const text = networkPolicyText(ledger.destinations());
  const docs = parseAllDocuments(text);
  assertEquals(docs.map((d) => d.errors.length), [0]);
  assertEquals(docs[0].toJS(), JSON.parse(JSON.stringify(web)));
  // What no NetworkPolicy can select is said, not silently dropped.
  assertMatch(
    text,
    /^# not in any NetworkPolicy \(processes outside pods, or pods whose labels are unknown\):\n# {3}batch\/report-0\/main -> 10\.96\.9\.9 port 8080\n# {3}kubelet -> 10\.0\.0\.1 port 6443\n/,
  );
  assertMatch(text, /# {3}db\.shop\.svc\.cluster\.local = 10\.96\.4\.4\n/);
});

Deno.test("egress record: CiliumNetworkPolicy with toFQDNs for names, toCIDR for addresses, DNS visibility", () => {
  const ledger = new EgressLedger({ rules: [] });
  for (const [event, name, labels] of cluster()) ledger.add(event, name, labels);
  const [web] = ciliumPolicies(ledger.destinations());
  assertEquals(web.apiVersion, "cilium.io/v2");
  assertEquals(web.kind, "CiliumNetworkPolicy");
  assertEquals(web.spec.endpointSelector, { matchLabels: { app: "web" } });
  assertEquals(web.spec.egress, [
    {
      toFQDNs: [{ matchName: "api.stripe.com" }],
      toPorts: [{ ports: [{ port: "443", protocol: "TCP" }] }],
    },
    {
      toFQDNs: [{ matchName: "db.shop.svc.cluster.local" }],
      toPorts: [{ ports: [{ port: "5432", protocol: "TCP" }] }],
    },
    { toCIDR: ["10.96.0.1/32"], toPorts: [{ ports: [{ port: "443", protocol: "TCP" }] }] },
    {
      toEndpoints: [{
        matchLabels: {
          "k8s:io.kubernetes.pod.namespace": "kube-system",
          "k8s:k8s-app": "kube-dns",
        },
      }],
      toPorts: [{
        ports: [{ port: "53", protocol: "ANY" }],
        rules: { dns: [{ matchPattern: "*" }] },
      }],
    },
  ]);
  const docs = parseAllDocuments(ciliumPolicyText(ledger.destinations()));
  assertEquals(docs.map((d) => d.toJS()), [JSON.parse(JSON.stringify(web))]);
  assertEquals(record(cluster(), true, "cilium"), ciliumPolicyText(ledger.destinations()));
});

Deno.test("egress record: hostile pod and command names stay inside comments and quoted strings", () => {
  const evil = 'x\n- allow: "*"\n#\u001b[2J';
  const evilComm = "x\n- allow: *\u001b"; // 13 bytes: the kernel keeps 15
  const seen: Seen[] = [
    [podConnectEvent("shop", evil, "app", { daddr: "10.0.0.5", dport: 5432 }), undefined, {
      app: evil,
    }],
    [connectEvent({ comm: evilComm, daddr: "10.0.0.6", dport: 22 })],
  ];
  for (const format of ["policy", "networkpolicy", "cilium"] as const) {
    const text = record(seen, true, format);
    assertEquals(activeCharacter(text), undefined, format);
    for (const doc of parseAllDocuments(text)) assertEquals(doc.errors, [], format);
  }
  const rules = parsePolicyFile(record(seen, true), "recorded.yaml");
  assertEquals(rules.length, 2, "no rule injected");
  assertEquals(rules.map((r) => r.scope.command ?? r.scope.labels?.app), [evilComm, evil]);
  assertEquals(judgeAll(record(seen, true), seen).exitStatus, 0);
});
