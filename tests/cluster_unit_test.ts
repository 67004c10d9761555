/**
 * Cluster mode's pieces that need no cluster and no privileges: the
 * agent's command line and pod, the exec URL, and the one-line errors made
 * from the API server's answers. (End to end: cluster_test.ts.)
 */

import * as k8s from "@kubernetes/client-node";
import { assertEquals, assertThrows } from "./helpers/assert.ts";
import { HeldOutput } from "../cli/held_output.ts";
import { formatterFor } from "../cli/output/formatter.ts";
import { JsonFormatter } from "../cli/output/json_formatter.ts";
import { parseJsonEvent } from "../cli/output/json_event.ts";
import { LineOutput } from "../cli/output/line_output.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import { parseTraceFlags } from "../cli/flags.ts";
import { agentArgs } from "../cli/cluster_mode.ts";
import { agentPod } from "../k8s/api/agent_pod.ts";
import { execUrl } from "../k8s/api/exec.ts";
import { apiError } from "../k8s/api/api_errors.ts";

Deno.test("cluster: the agent runs node mode with the filters, as JSON, on the host's root", () => {
  const flags = parseTraceFlags([
    "--cluster",
    "-p",
    "web-0",
    "-c",
    "nginx",
    "--host",
    "--pid",
    "42",
    "--comm",
    "curl",
    "--failure-only",
    "-l",
    "app=web",
    "-o",
    "columns",
  ]);
  // Each flag one word: a value that starts with "-" stays a value.
  assertEquals(agentArgs(flags, "node-a", "shop"), [
    "trace",
    "tcp",
    "--output=json",
    "--pid=42",
    "--comm=curl",
    "--failure-only",
    "--namespace=shop",
    "--podname=web-0",
    "--containername=nginx",
    "--host",
    "--host-root=/host",
    "--node-name=node-a",
    "--agent-pid-file=/tmp/tcpgadget/agent.pid",
  ]);
  // -A: no namespace for the agent.
  assertEquals(agentArgs(parseTraceFlags(["--cluster", "-A"]), "n", undefined), [
    "trace",
    "tcp",
    "--output=json",
    "--host-root=/host",
    "--node-name=n",
    "--agent-pid-file=/tmp/tcpgadget/agent.pid",
  ]);
});

Deno.test("cluster: the agent pod", () => {
  const pod = agentPod({
    runId: "a1b2c3",
    index: 1,
    node: "worker-1",
    namespace: "tools",
    image: "registry.local/debian:12",
    deadlineSeconds: 700,
  });
  assertEquals(pod.metadata?.name, "tcpgadget-a1b2c3-1");
  assertEquals(pod.metadata?.annotations, { "tcpgadget.io/node": "worker-1" });
  const spec = pod.spec!;
  assertEquals(
    [spec.nodeName, spec.hostPID, spec.activeDeadlineSeconds, spec.containers[0].command],
    ["worker-1", true, 700, ["sleep", "700"]],
  );
  // An image that holds tcpgadget (--agent-image) has no sleep: tcpgadget idles.
  const own = agentPod({
    runId: "a1b2c3",
    index: 1,
    node: "worker-1",
    namespace: "tools",
    image: "registry.local/tcpgadget:0.1.0",
    program: "/usr/local/bin/tcpgadget",
    deadlineSeconds: 700,
  });
  assertEquals(
    [own.spec!.containers[0].image, own.spec!.containers[0].command],
    ["registry.local/tcpgadget:0.1.0", ["/usr/local/bin/tcpgadget", "agent", "idle", "700"]],
  );
});

Deno.test("cluster: exec URLs carry the command word by word", () => {
  const url = execUrl(
    "https://api.example:6443/prefix/",
    { namespace: "a b", pod: "p", container: "agent" },
    ["sh", "-c", "echo $x && ls"],
    true,
  );
  assertEquals(
    url.href,
    "wss://api.example:6443/prefix/api/v1/namespaces/a%20b/pods/p/exec?command=sh&command=-c&command=echo+%24x+%26%26+ls&container=agent&stdout=true&stderr=true&stdin=true",
  );
});

Deno.test("cluster: API failures become one line naming what to fix", () => {
  const status = (code: number, message: string) =>
    new k8s.ApiException(code, message, { kind: "Status", message }, {});
  const origin = { server: "https://k:6443", context: "prod", source: "/kc" };
  const cases: [unknown, { verb: string; resource: string; namespace?: string }, string][] = [
    [
      status(
        403,
        'pods "p" is forbidden: User "u" cannot get resource "pods/exec" in API group "" in the namespace "ns"',
      ),
      { verb: "create", resource: "pods/exec", namespace: "ns" },
      'permission denied: tcpgadget needs verb "get" on resource "pods/exec" in namespace "ns"; pods "p" is forbidden: User "u" cannot get resource "pods/exec" in API group "" in the namespace "ns"',
    ],
    [
      status(401, "Unauthorized"),
      { verb: "list", resource: "nodes" },
      "the Kubernetes API server at https://k:6443 rejected the credentials (401 Unauthorized): check the kubeconfig's user",
    ],
    [
      Object.assign(
        new Error("request to https://k:6443/api/v1/nodes failed, reason: getaddrinfo ENOTFOUND k"),
        { name: "FetchError", code: "ENOTFOUND" },
      ),
      { verb: "list", resource: "nodes" },
      'cannot connect to the Kubernetes API server at https://k:6443 (context "prod" of kubeconfig /kc): getaddrinfo ENOTFOUND k',
    ],
  ];
  for (const [error, request, message] of cases) {
    assertEquals(apiError(error, request, origin).message, message);
  }
});

Deno.test("cluster: an agent's line is checked field by field: no line forges another's fields", () => {
  const formatter = new JsonFormatter();
  const event: TraceEvent = {
    type: "C",
    timeSec: 1_700_000_000,
    timeNsec: 5,
    pid: 42,
    tid: 43,
    uid: 0,
    gid: 0,
    comm: "tg\x1b[2J",
    mntns: 1,
    netns: 2,
    cgroupId: 0,
    ipversion: 6,
    saddr: "fd00::1",
    sport: 40000,
    daddr: "10.0.0.2",
    dport: 80,
    node: "node-a",
    namespace: "shop",
    pod: "web-0",
    container: "nginx",
    containerId: "",
    podUid: "",
    dstEndpoint: { kind: "svc", namespace: "shop", name: "cart" },
    error: "ECONNREFUSED",
  };
  const line = formatter.format(event);
  assertEquals(parseJsonEvent(line), event);
  const object = JSON.parse(line);
  // Fields the JSON output writes unquoted, or inside its own quotes.
  const forged: Record<string, unknown>[] = [
    { saddr: '1.2.3.4","pod":"forged' },
    { daddr: "10.0.0.2\n" },
    { pid: '1,"pod":"forged"' },
    { sport: -1 },
    { dport: 1.5 },
    { ipversion: "4" },
    { error: 'E","pod":"forged' },
    { comm: 7 },
    { node: { name: "x" } },
    { dstendpoint: { kind: 'svc","x":"', namespace: "a", name: "b" } },
    { dstendpoint: { kind: "svc", namespace: 1, name: "b" } },
    { timestamp: '2023-11-14T22:13:20.000000005Z","x":"' },
  ];
  for (const fields of forged) {
    assertThrows(() => parseJsonEvent(JSON.stringify({ ...object, ...fields })), Error);
  }
  assertThrows(() => parseJsonEvent("[1]"), Error);
});

Deno.test("cluster: events past the limit held before every node traces are counted and reported", () => {
  let written = "";
  const output = new LineOutput({
    writeSync: (data) => (written += new TextDecoder().decode(data), data.length),
  });
  const warnings: string[] = [];
  const held = new HeldOutput(
    output,
    formatterFor("custom-columns=pid,comm"),
    (message) => warnings.push(message),
    3,
  );
  const event = (pid: number) => ({ pid, comm: "curl" }) as TraceEvent;
  for (let pid = 1; pid <= 5; pid++) held.write(event(pid));
  assertEquals([held.released, held.holding, written], [false, 3, ""]);
  held.release(2);
  held.write(event(6));
  output.flush();
  assertEquals(written, "PID    COMM\n1      curl\n2      curl\n3      curl\n6      curl\n");
  assertEquals(warnings, [
    "lost 2 events (only the first 3 before every node traces are kept)",
  ]);
});
