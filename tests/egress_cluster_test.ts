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

import * as k8s from "@kubernetes/client-node";
import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { assertNothingLeft, clusterSkipReason, FakeCluster, PodActor } from "./helpers/cluster.ts";
import type { Summary } from "../cli/egress/summary_report.ts";

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
        "--allow",
        `localhost:${port}`,
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
      // node's agent read the pod's hosts file), its second is not allowed.
      await cluster.workload("shop", "web", { container: "client", labels: { app: "web" } });
      const web = await PodActor.start(cluster, "shop", "web", "client", "tg-web");
      const first = await web.do(`connect 127.0.0.1 ${port}`);
      const second = await web.do(`connect 127.0.0.2 ${port}`);
      assertEquals([first.error, second.error], [null, null]);
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
      const base = { ipVersion: 4 as const, port, who, count: 1, failed: 0, errors: [] };
      assertEquals(destinations(summary), [
        {
          verdict: "violation",
          rule: null,
          host: null,
          hostSource: null,
          cnames: [],
          address: "127.0.0.2",
          ...base,
        },
        {
          verdict: "allowed",
          rule: 1,
          host: "localhost",
          hostSource: "hosts",
          cnames: [],
          address: "127.0.0.1",
          ...base,
        },
      ]);
      assertEquals([summary.commandStatus, summary.lostEvents], [0, 0]);
      assertMatch(
        watch.stderr,
        /^VIOLATION +no rule +- +- +127\.0\.0\.2 +\d+ +shop\/web\/client \(tg-web\) +1 +0 /m,
      );
      await assertNothingLeft(cluster, pids);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
