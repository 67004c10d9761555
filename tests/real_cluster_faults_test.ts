/**
 * Faults of the REAL cluster (the one tests/real_cluster runs on this
 * machine, TCPGADGET_E2E_KUBECONFIG) while `trace tcp --cluster` runs:
 *
 * - the kubelet restarted: the API server's leg to it breaks, and the exec
 *   stream does not simply drop: the client gets a `Success` status on
 *   channel 3 while the agent lives on in the pod;
 * - an upload cut short (by a TCP proxy in front of the API server) and
 *   retried while the first attempt's `head` still runs in the container:
 *   real containerd keeps exec'd processes running after the client goes;
 * - a stream idle past the exec idle timeout.
 *
 * These restart the cluster's components: they need the cluster of
 * tests/real_cluster (skipped, saying so, otherwise).
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import type { CliRun } from "./helpers/cli.ts";
import {
  agentProcesses,
  connectionEvents,
  E2E_NAMESPACE,
  eventually,
  type PodActorOnNode,
  podParty,
  RealCluster,
  realClusterTest,
  roundTrip,
  seenEvents,
  sortedEvents,
  stderrLines,
} from "./helpers/real_cluster.ts";
import { restartComponent } from "./real_cluster/component_restart.ts";

const FILE = "tests/real_cluster_faults_test.ts";
const START_TIMEOUT_MS = 240_000;

async function tracing(run: CliRun): Promise<void> {
  const line = "tracing TCP connections on 1 node";
  await run.waitFor(() => run.stderr.includes(line), line, START_TIMEOUT_MS);
}

/** Ends a run that a failed test left running. */
async function stop(run: CliRun): Promise<void> {
  try {
    run.child.kill("SIGINT");
  } catch {
    return; // already ended
  }
  await run.finish(60_000).catch(() => {});
}

/** Actors in the client and server pods, started again until the kubelet serves exec. */
async function actors(
  cluster: RealCluster,
  pods: {
    client: Parameters<RealCluster["actor"]>[0];
    server: Parameters<RealCluster["actor"]>[0];
  },
  generation: number,
): Promise<{ client: PodActorOnNode; server: PodActorOnNode }> {
  return await eventually(
    "actors in the pods",
    async () => {
      try {
        return {
          client: await cluster.actor(pods.client, "client", `tgc${generation}-${cluster.suffix}`),
          server: await cluster.actor(pods.server, "server", `tgs${generation}-${cluster.suffix}`),
        };
      } catch {
        return undefined; // the kubelet does not serve exec yet
      }
    },
    120,
    1000,
  );
}

realClusterTest(
  FILE,
  "real cluster: the kubelet restarted while tracing: the stream is reopened, the stale agent stopped, events after the restart arrive",
  { local: true },
  async () => {
    await using cluster = new RealCluster();
    const sfx = cluster.suffix;
    const [serverPod, clientPod] = await Promise.all([
      cluster.pod(E2E_NAMESPACE, `tgs-${sfx}`, [{ name: "server" }]),
      cluster.pod(E2E_NAMESPACE, `tgc-${sfx}`, [{ name: "client" }]),
    ]);
    const pods = { client: clientPod, server: serverPod };
    const [node] = await cluster.readyNodes();
    const { run, runId } = await cluster.startRun([
      "-n",
      E2E_NAMESPACE,
      "-p",
      clientPod.metadata!.name!,
      "-o",
      "json",
    ]);
    cluster.defer(() => stop(run));
    await tracing(run);
    const [agentPod] = await cluster.agentPodObjects(runId);
    const before = agentProcesses(agentPod);
    assertEquals(before.length, 1, `agents: ${before}`);

    const downMs = await restartComponent("kubelet");
    console.log(`kubelet restarted: down ${downMs.toFixed(0)} ms`);
    await run.waitFor(
      () => run.stderr.includes("event stream dropped; reconnecting"),
      "the stream to be reopened",
      60_000,
    );
    // The actors' own exec sessions went with the kubelet: new ones. A
    // connection is seen once the new agent traces.
    const { client, server } = await actors(cluster, pods, 2);
    const comms = [client.comm, server.comm];
    const { sock: listener, port } = await server.do("listen 0.0.0.0");
    const serverIP = serverPod.status!.podIP!;
    const sport = await eventually("a connection traced after the restart", async () => {
      const sport = await roundTrip(client, server, listener, serverIP, port);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      return seenEvents(run, comms, true).some((e) => e.sport === sport) ? sport : undefined;
    }, 120);
    const expected = connectionEvents(
      node,
      podParty(clientPod, "client", client),
      podParty(serverPod, "server", server),
      { sport, daddr: serverIP, dport: port, serverPort: port },
      true,
    ).client;
    await run.waitFor(
      () => seenEvents(run, comms, true).filter((e) => e.sport === sport).length >= 2,
      "the connection's close",
    );
    assertEquals(
      seenEvents(run, comms, true).filter((e) => e.sport === sport),
      sortedEvents(expected),
    );
    // One agent: the new one stopped the one the restart left running.
    await eventually("one agent in the pod", () => {
      const now = agentProcesses(agentPod);
      return now.length === 1 && now[0] !== before[0] ? true : undefined;
    }, 60);

    run.child.kill("SIGINT");
    assertEquals((await run.finish(60_000)).code, 0, run.stderr);
    assertEquals(await cluster.agentPods(runId), []);
    const lines = stderrLines(run.stderr);
    assertEquals(lines.slice(0, 2), [
      `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
      "tcpgadget: tracing TCP connections on 1 node",
    ]);
    assert(lines.length > 2, run.stderr);
    for (const line of lines.slice(2)) {
      assertMatch(line, /^tcpgadget: node \S+: event stream dropped; reconnecting \([123]\/3\)$/);
    }
  },
);
