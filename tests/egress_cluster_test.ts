/**
 * `tcpgadget egress watch` of Kubernetes pods, end to end: with `--cluster`
 * against the fake API server (tests/kube_apiserver: its nodes are this
 * machine, its pods processes here), pods created during the watch are
 * judged from their first connection, with the names each node's agent
 * gave their destinations and the pods' labels from the API; and, when
 * TCPGADGET_E2E_KUBECONFIG names the real single-node cluster
 * (tests/real_cluster), the same for real pods (started by COMMAND, with
 * kubectl), in node mode with the API and with `--cluster`.
 */

import { Actor } from "./helpers/actors.ts";
import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { assertNothingLeft, clusterSkipReason, FakeCluster, PodActor } from "./helpers/cluster.ts";
import type { Summary } from "../cli/egress/summary_report.ts";
import {
  containerNodePids,
  E2E_AGENT_IMAGE,
  E2E_NAMESPACE,
  E2E_WORKLOAD_IMAGE,
  eventually,
  RealCluster,
  realClusterTest,
  TEST_CLUSTER_NODE,
} from "./helpers/real_cluster.ts";
import { CACHE_DIR, NODE_IP } from "./real_cluster/layout.ts";
import { VERSIONS } from "./real_cluster/versions.ts";

const FILE = "tests/egress_cluster_test.ts";
const SKIP = clusterSkipReason();
if (SKIP) console.warn(`SKIPPED (${FILE}): ${SKIP}`);

const START_TIMEOUT_MS = 90_000;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function until(
  condition: () => Promise<boolean>,
  what: string,
  timeoutMs = START_TIMEOUT_MS,
) {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The summary's destinations without their times. */
function destinations(summary: Summary) {
  return summary.destinations.map(({ first: _, ...d }) => d);
}

Deno.test({
  name:
    "egress watch --cluster: pods created during the watch are judged from their first connection, named on their node, with their labels",
  ignore: SKIP !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await FakeCluster.start({ namespaces: ["shop"], namespace: "shop" });
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-egress-cluster-" });
    const server = await Actor.start("tg-eg-server");
    try {
      const { port } = await server.do("listen 127.0.0.1");
      // Allowed only to pods with these labels: they come from the API.
      const policy = `${dir}/policy.yaml`;
      await Deno.writeTextFile(
        policy,
        `rules:\n  - allow: "localhost:${port}"\n    namespace: shop\n    labels: { app: web }\n`,
      );
      const started = `${dir}/started`;
      const done = `${dir}/done`;
      const watch = CliRun.start([
        "egress",
        "watch",
        "--cluster",
        "--kubeconfig",
        cluster.kubeconfig,
        "--node",
        "node-a",
        "-n",
        "shop",
        "--policy",
        policy,
        "--summary",
        `${dir}/summary.json`,
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        `touch ${started}; while [ ! -e ${done} ]; do sleep 0.05; done`,
      ]);
      // COMMAND starts once every node traces.
      await until(() => exists(started), "COMMAND to start");
      const pids = cluster.agentProcesses();
      // A pod created now: its first connection is judged (by name: the
      // node's agent read the pod's hosts file); its second, refused, is
      // an attempt all the same, to an address no rule allows.
      await cluster.workload("shop", "web", { container: "client", labels: { app: "web" } });
      const web = await PodActor.start(cluster, "shop", "web", "client", "tg-web");
      const first = await web.do(`connect 127.0.0.1 ${port}`);
      const second = await web.do(`connect 127.0.0.2 ${port}`);
      assertEquals([first.error, second.error], [null, "ECONNREFUSED"]);
      // The client shows (and so has judged) both.
      await watch.waitFor(
        () => watch.json().filter((e) => e.comm === "tg-web" && e.dport === port).length === 2,
        "the pod's two connects",
        START_TIMEOUT_MS,
      );
      await Deno.writeTextFile(done, "");
      const status = await watch.finish(60_000);
      assertEquals(status.code, 3, watch.stderr);
      await web.stop();
      const summary: Summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
      const who = {
        node: "node-a",
        namespace: "shop",
        pod: "web",
        container: "client",
        command: "tg-web",
        pid: web.pid,
      };
      const base = { ipVersion: 4 as const, port, who, count: 1 };
      assertEquals(destinations(summary), [
        {
          verdict: "violation",
          rule: null,
          host: null,
          hostSource: null,
          cnames: [],
          address: "127.0.0.2",
          ...base,
          failed: 1,
          errors: ["ECONNREFUSED"],
        },
        {
          verdict: "allowed",
          rule: 1,
          host: "localhost",
          hostSource: "hosts",
          cnames: [],
          address: "127.0.0.1",
          ...base,
          failed: 0,
          errors: [],
        },
      ]);
      assertEquals([summary.commandStatus, summary.lostEvents], [0, 0]);
      assertMatch(
        watch.stderr,
        /^VIOLATION +no rule +- +- +127\.0\.0\.2 +\d+ +shop\/web\/client \(tg-web\) +1 +1 ECONNREFUSED /m,
      );
      await assertNothingLeft(cluster, pids);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const KUBECTL = `${CACHE_DIR}/kubernetes-${VERSIONS.kubernetes}/bin/kubectl`;

/**
 * A pod of the workload image that connects, by a name of its hosts file
 * (hostAliases), to `port` of the node, makes a refused connect to port 1,
 * and waits until the test's server closes the first connection (its
 * process must still run when the watch reads its hosts file).
 */
function e2ePod(name: string, port: number) {
  const script = [
    "import socket",
    `s = socket.create_connection(("allowed.e2e.test", ${port}), timeout=120)`,
    "c = socket.socket()",
    "c.settimeout(10)",
    `print("refused", c.connect_ex(("${NODE_IP}", 1)), flush=True)`,
    "while s.recv(4096): pass",
  ].join("\n");
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: E2E_NAMESPACE, labels: { app: name } },
    spec: {
      restartPolicy: "Never",
      // Ends on its own if the test dies before deleting it.
      activeDeadlineSeconds: 300,
      terminationGracePeriodSeconds: 1,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostAliases: [{ ip: NODE_IP, hostnames: ["allowed.e2e.test"] }],
      containers: [{
        name: "client",
        image: E2E_WORKLOAD_IMAGE,
        imagePullPolicy: "IfNotPresent",
        command: ["python3", "-c", script],
      }],
    },
  };
}

for (const mode of ["node mode, with the API", "--cluster"] as const) {
  realClusterTest(
    FILE,
    `egress watch on a real cluster (${mode}): a pod that COMMAND starts (kubectl) is judged from its first connection, named from its hosts file, with its labels`,
    // The pod's node PID is read from its cgroup here; node mode traces this node.
    { local: true, bpf: true },
    async () => {
      await using cluster = new RealCluster();
      const name = cluster.name("egress-e2e");
      const dir = await Deno.makeTempDir({ prefix: "tcpgadget-egress-e2e-" });
      cluster.defer(() => Deno.remove(dir, { recursive: true }));
      // Made by COMMAND, so not known to the cluster helper: deleted here.
      cluster.defer(() =>
        cluster.core.deleteNamespacedPod({ name, namespace: E2E_NAMESPACE, gracePeriodSeconds: 0 })
          .catch(() => {})
      );
      const listener = Deno.listen({ hostname: "0.0.0.0", port: 0 });
      cluster.defer(() => Promise.resolve().then(() => listener.close()));
      const port = (listener.addr as Deno.NetAddr).port;
      await Deno.writeTextFile(`${dir}/pod.json`, JSON.stringify(e2ePod(name, port)));
      await Deno.writeTextFile(
        `${dir}/policy.yaml`,
        `rules:\n  - allow: "allowed.e2e.test:${port}"\n    namespace: ${E2E_NAMESPACE}\n    labels: { app: ${name} }\n`,
      );
      const kubectl = `${KUBECTL} --kubeconfig ${cluster.kubeconfig} -n ${E2E_NAMESPACE}`;
      const where = mode === "--cluster"
        ? [
          "--cluster",
          "--agent-namespace",
          await cluster.agentNamespace(),
          ...(E2E_AGENT_IMAGE ? ["--image", E2E_AGENT_IMAGE] : []),
        ]
        : ["--node-name", TEST_CLUSTER_NODE];
      const run = CliRun.start([
        "egress",
        "watch",
        ...where,
        "-o",
        "json",
        "--kubeconfig",
        cluster.kubeconfig,
        "-n",
        E2E_NAMESPACE,
        // Only this test's pod: other tests' pods may share the namespace.
        "-l",
        `app=${name}`,
        "--policy",
        `${dir}/policy.yaml`,
        "--summary",
        `${dir}/summary.json`,
        "--",
        "sh",
        "-c",
        `${kubectl} apply -f ${dir}/pod.json >/dev/null && ` +
        `${kubectl} wait --for=jsonpath='{.status.phase}'=Succeeded pod/${name} --timeout=180s >/dev/null`,
      ]);
      cluster.defer(async () => {
        // A failed test's watch is stopped (a no-op when it has ended).
        try {
          run.child.kill("SIGTERM");
        } catch {
          // exited
        }
        await run.finish(START_TIMEOUT_MS);
      });
      // The pod's connection is held until the watch has shown (and so
      // judged) both connects; meanwhile its process is read.
      const conn = await Promise.race([listener.accept(), run.child.status.then(() => undefined)]);
      if (conn === undefined) {
        throw new Error(`egress watch ended before the pod connected: ${run.stderr}`);
      }
      const pod = await cluster.waitPod(
        E2E_NAMESPACE,
        name,
        (pod) => !!pod.status?.containerStatuses?.[0]?.state?.running,
        "running",
      );
      const [pid] = containerNodePids(pod, "client");
      await run.waitFor(
        () => run.json().filter((e) => e.pod === name).length === 2,
        "the pod's two connects",
        START_TIMEOUT_MS,
      );
      conn.close();
      const status = await run.finish(START_TIMEOUT_MS);
      assertEquals(status.code, 3, run.stderr);
      const summary: Summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
      const who = {
        node: TEST_CLUSTER_NODE,
        namespace: E2E_NAMESPACE,
        pod: name,
        container: "client",
        command: "python3",
        pid,
      };
      const named = { host: "allowed.e2e.test", hostSource: "hosts" as const, cnames: [] };
      const base = { ...named, address: NODE_IP, ipVersion: 4 as const, who, count: 1 };
      assertEquals(destinations(summary), [
        // The hosts file names the address, whatever the port.
        { verdict: "violation", rule: null, ...base, port: 1, failed: 1, errors: ["ECONNREFUSED"] },
        { verdict: "allowed", rule: 1, ...base, port, failed: 0, errors: [] },
      ]);
      assertEquals([summary.commandStatus, summary.lostEvents], [0, 0], run.stderr);
      assertMatch(
        run.stderr,
        new RegExp(
          `^VIOLATION +no rule +allowed\\.e2e\\.test +hosts +${
            NODE_IP.replaceAll(".", "\\.")
          } +1 +${E2E_NAMESPACE}/${name}/client \\(python3\\) +1 +1 ECONNREFUSED `,
          "m",
        ),
      );
      if (mode === "--cluster") {
        // Every stop leaves no agent pod.
        assertEquals(await cluster.agentPods(), []);
      }
      // The pod ran to its end.
      await eventually(
        "the pod to succeed",
        async () =>
          (await cluster.core.readNamespacedPod({ name, namespace: E2E_NAMESPACE })).status
              ?.phase === "Succeeded" || undefined,
      );
    },
  );
}
