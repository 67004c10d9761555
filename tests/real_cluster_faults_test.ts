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
  containerNodePids,
  E2E_NAMESPACE,
  eventually,
  type PodActorOnNode,
  podParty,
  RealCluster,
  realClusterTest,
  roundTrip,
  seenEvents,
  sortedEvents,
  START_TIMEOUT_MS,
  stderrLines,
  tracingOneNode,
} from "./helpers/real_cluster.ts";
import {
  containerdWithStreamIdleTimeout,
  restartComponent,
  startExtraApiServer,
} from "./real_cluster/component_restart.ts";
import { execText } from "./helpers/cluster.ts";
import { UploadCutter } from "./helpers/upload_cutter.ts";
import { sha256File } from "../k8s/api/self_copy.ts";

const FILE = "tests/real_cluster_faults_test.ts";

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
    await tracingOneNode(run);
    const [agentPod] = await cluster.agentPodObjects(runId);
    const before = agentProcesses(agentPod);
    assertEquals(before.length, 1, `agents: ${before}`);

    await restartComponent("kubelet");
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

/**
 * Processes of the agent container running `head -c` on an upload's packed
 * bytes (each attempt's copy), oldest first; not the `head -c SIZE` that
 * bounds each attempt's hashing of the unpacked file.
 */
function uploadCopies(agentPod: Parameters<typeof containerNodePids>[0], unpackedSize: number) {
  return containerNodePids(agentPod, "agent").flatMap((pid) => {
    try {
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      if (argv[0] !== "head" || argv[1] !== "-c" || argv[2] === String(unpackedSize)) return [];
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return [{ pid, parent: Number(fields[1]), started: Number(fields[19]) }];
    } catch {
      return [];
    }
  }).sort((a, b) => a.started - b.started);
}

function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) [ZX]/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

realClusterTest(
  FILE,
  "real cluster: an upload cut short and retried while the first attempt's processes live on: they end after the retry and never touch its file",
  { local: true },
  async () => {
    await using cluster = new RealCluster();
    // tcpgadget talks to the API server through a proxy that cuts its
    // first upload 30 MB in (of the packed Deno executable's ~43 MB;
    // holding the API server's side open: the first attempt's `head` waits
    // on), and pauses the retry 20 MB in.
    const server = new URL(cluster.kc.getCurrentCluster()!.server);
    await using cutter = new UploadCutter(
      { hostname: server.hostname, port: Number(server.port || 443) },
      30_000_000,
      20_000_000,
    );
    const kubeconfig = await Deno.makeTempFile({ prefix: "tcpgadget-e2e-proxied-" });
    cluster.defer(() => Deno.remove(kubeconfig));
    await Deno.writeTextFile(
      kubeconfig,
      (await Deno.readTextFile(cluster.kubeconfig)).replace(
        server.origin,
        `https://127.0.0.1:${cutter.port}`,
      ),
    );
    const { run, runId, namespace } = await cluster.startRun(["-A", "-o", "json"], { kubeconfig });
    cluster.defer(() => stop(run));
    let exited = false;
    run.child.status.then(() => exited = true);
    let paused = false;
    cutter.retryPaused.then(() => paused = true);
    await eventually("the retry to be paused", () => {
      if (exited) throw new Error(`tcpgadget ended: ${run.stderr}`);
      return paused || undefined;
    }, START_TIMEOUT_MS / 1000);
    const [agentPod] = await cluster.agentPodObjects(runId);
    const binary = Deno.env.get("TCPGADGET_TEST_BINARY");
    const [uploaded, local] = binary ? ["tcpgadget", binary] : ["deno", Deno.execPath()];
    // Both attempts' copies run: the first waits for input that never comes.
    const copies = await eventually("both attempts' copies", () => {
      const now = uploadCopies(agentPod, Deno.statSync(local).size);
      return now.length === 2 ? now : undefined;
    }, 60);
    const first = copies[0];

    // Its standard input ends: its copy (short) ends, and what follows it in its shell.
    cutter.releaseFirst();
    await eventually(
      "the first attempt's copy and shell to end",
      () => !alive(first.pid) && !alive(first.parent) ? true : undefined,
      60,
    );
    cutter.resumeRetry();
    await tracingOneNode(run);

    const agentName = agentPod.metadata!.name!;
    const inPod = (command: string[]) => execText(cluster, namespace, agentName, "agent", command);
    assertEquals(
      await inPod(["sha256sum", `/tmp/tcpgadget/${uploaded}`]),
      `${await sha256File(local)}  /tmp/tcpgadget/${uploaded}\n`,
    );
    // No temporary file of either attempt is left.
    assertEquals(
      (await inPod(["find", "/tmp/tcpgadget", "-maxdepth", "1", "-type", "f"]))
        .split("\n").filter(Boolean).sort(),
      ["agent.pid", ...(binary ? ["tcpgadget"] : ["deno", "tcpgadget.js"])]
        .map((name) => `/tmp/tcpgadget/${name}`),
    );
    run.child.kill("SIGINT");
    assertEquals((await run.finish(60_000)).code, 0, run.stderr);
    assertEquals(await cluster.agentPods(runId), []);
    const [node] = await cluster.readyNodes();
    assertEquals(stderrLines(run.stderr), [
      `tcpgadget: node ${node}: upload interrupted (exec stream to pod ${namespace}/tcpgadget-RUN-0 ended without an exit status); retrying (1/3)`,
      `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
      "tcpgadget: tracing TCP connections on 1 node",
    ]);
  },
);

/** containerd's stream idle timeout in the idle test, and how long the stream idles. */
const IDLE_TIMEOUT_S = 30;
const IDLE_S = 40;

realClusterTest(
  FILE,
  `real cluster: an event stream idle past the exec idle timeout (containerd's stream_idle_timeout at ${IDLE_TIMEOUT_S} s; pings do not count) is kept alive`,
  { local: true },
  async () => {
    // The idle timeout of an exec stream is the API server's (its stream
    // translator's, 4 h, fixed) for protocol v5, and containerd's stream
    // server's (stream_idle_timeout, 4 h by default) for v4, which the API
    // server passes through as it is when its translation is off. Both
    // are reset by messages only. This test shortens containerd's, and
    // talks to a second API server of the cluster with the translation
    // off (the first one goes on serving everyone else).
    await using cluster = new RealCluster();
    await restartComponent("containerd", containerdWithStreamIdleTimeout(`${IDLE_TIMEOUT_S}s`));
    cluster.defer(() => restartComponent("containerd"));
    await using apiserver = await startExtraApiServer([
      "--feature-gates=TranslateStreamCloseWebsocketRequests=false",
    ]);
    const sfx = cluster.suffix;
    // The test's own exec sessions go through the first API server (v5,
    // whose translator pings containerd): they do not idle out.
    const [serverPod, clientPod] = await Promise.all([
      cluster.pod(E2E_NAMESPACE, `tgs-${sfx}`, [{ name: "server" }]),
      cluster.pod(E2E_NAMESPACE, `tgc-${sfx}`, [{ name: "client" }]),
    ]);
    const { client, server } = await actors(cluster, { client: clientPod, server: serverPod }, 1);
    const { run, runId } = await cluster.startRun(
      ["-n", E2E_NAMESPACE, "-p", clientPod.metadata!.name!, "-o", "json"],
      { kubeconfig: apiserver.kubeconfig },
    );
    cluster.defer(() => stop(run));
    await tracingOneNode(run);
    // Nothing to report for longer than the timeout.
    await new Promise((resolve) => setTimeout(resolve, IDLE_S * 1000));
    const { sock: listener, port } = await server.do("listen 0.0.0.0");
    const serverIP = serverPod.status!.podIP!;
    const sport = await roundTrip(client, server, listener, serverIP, port);
    const comms = [client.comm];
    await run.waitFor(
      () => seenEvents(run, comms, true).filter((e) => e.sport === sport).length >= 2,
      "the connection after the idle time",
      60_000,
    );
    const [node] = await cluster.readyNodes();
    assertEquals(
      seenEvents(run, comms, true),
      sortedEvents(
        connectionEvents(
          node,
          podParty(clientPod, "client", client),
          podParty(serverPod, "server", server),
          { sport, daddr: serverIP, dport: port, serverPort: port },
          true,
        ).client,
      ),
    );
    run.child.kill("SIGINT");
    assertEquals((await run.finish(60_000)).code, 0, run.stderr);
    assertEquals(await cluster.agentPods(runId), []);
    // Kept alive: never dropped.
    assertEquals(stderrLines(run.stderr), [
      `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
      "tcpgadget: tracing TCP connections on 1 node",
    ]);
  },
);
