/**
 * Node mode (`trace tcp` without --cluster, as root, on this machine) on
 * the node of the REAL cluster that tests/real_cluster runs here: the real
 * kubelet's and containerd's pods are named from the node's own files (the
 * containers' cgroups, the kubelet's log links in /var/log/containers),
 * with no API access; `-n`, `-p`, `-c` select in the kernel; a pod that
 * starts while tracing is seen from its first connection.
 *
 * Skipped, saying why, without TCPGADGET_E2E_KUBECONFIG naming the local
 * test cluster, or without root and BPF.
 *
 * @module
 */

import { assertEquals } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import {
  connectionEvents,
  containerNodePid,
  E2E_BASELINE_NAMESPACE,
  E2E_NAMESPACE,
  eventually,
  hostParty,
  podParty,
  RealCluster,
  realClusterTest,
  roundTrip,
  seenEvents,
  sortedEvents,
} from "./helpers/real_cluster.ts";

const FILE = "tests/real_cluster_node_mode_test.ts";

/** A pod's first and only connection, made as soon as its container starts. */
const LATE_CLIENT = `
import os, socket, sys, time
with open("/proc/self/comm", "w") as f:
    f.write(sys.argv[1])
c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
print(c.getsockname()[1], flush=True)
c.close()
time.sleep(900)
`;

async function nodeMode(args: string[]): Promise<CliRun> {
  const run = CliRun.start(["trace", "tcp", "-o", "json", ...args]);
  await run.waitFor(
    () => run.stderr.includes("tracing TCP connections"),
    "the tracer to attach",
    60_000,
  );
  return run;
}

realClusterTest(
  FILE,
  "real cluster, node mode on its node: the real kubelet's pods named from cgroups and log files; -n, -p, -c select",
  { local: true, bpf: true },
  async () => {
    await using cluster = new RealCluster();
    const {
      serverPod,
      webPod,
      otherPod,
      server,
      alpha,
      beta,
      other,
      host,
      comms,
      listener,
      port,
      clusterIP,
      nodeIP,
    } = await cluster.serverAndClients();

    const runs: CliRun[] = [];
    cluster.defer(async () => {
      for (const run of runs) run.child.kill("SIGINT");
      for (const run of runs) await run.finish(30_000).catch(() => {});
    });
    const start = async (args: string[]) => {
      const run = await nodeMode(args);
      runs.push(run);
      return run;
    };
    const every = await start([]);
    const alphaOnly = await start([
      "-n",
      E2E_NAMESPACE,
      "-p",
      webPod.metadata!.name!,
      "-c",
      "alpha",
    ]);
    const otherOnly = await start(["-n", E2E_BASELINE_NAMESPACE]);

    const serverIP = serverPod.status!.podIP!;
    const serverSide = podParty(serverPod, "server", server);
    const direct = (sport: number) => ({ sport, daddr: serverIP, dport: port, serverPort: port });
    // NODE in node mode is the host's name.
    const hostName = Deno.readTextFileSync("/etc/hostname").trim();
    const events = (client: ReturnType<typeof podParty>, connection: ReturnType<typeof direct>) =>
      connectionEvents(hostName, client, serverSide, connection, false);
    const a = events(
      podParty(webPod, "alpha", alpha),
      direct(await roundTrip(alpha, server, listener, serverIP, port)),
    );
    const b = events(podParty(webPod, "beta", beta), {
      sport: await roundTrip(beta, server, listener, clusterIP, 80),
      daddr: clusterIP,
      dport: 80,
      serverPort: port,
    });
    const o = events(
      podParty(otherPod, "main", other),
      direct(await roundTrip(other, server, listener, serverIP, port)),
    );
    const h = events(
      hostParty(host, nodeIP),
      direct(await roundTrip(host, server, listener, serverIP, port)),
    );

    const expected = new Map([
      // Every process of the node, the pods' named, the host's `<>`.
      [every, [a, b, o, h].flatMap((c) => [...c.client, ...c.server])],
      [alphaOnly, a.client],
      [otherOnly, o.client],
    ]);
    for (const [run, events] of expected) {
      await run.waitFor(
        () => seenEvents(run, comms, false).length >= events.length,
        `${events.length} events`,
        30_000,
      ).catch(() => {}); // compared below, with what is missing
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const [run, events] of expected) {
      assertEquals(seenEvents(run, comms, false), sortedEvents(events), run.stderr);
    }
    for (const run of runs.splice(0)) {
      run.child.kill("SIGINT");
      assertEquals((await run.finish(30_000)).code, 0, run.stderr);
    }
  },
);

realClusterTest(
  FILE,
  "real cluster, node mode on its node: a pod started while tracing is seen from its first connection, with and without -n -p",
  { local: true, bpf: true },
  async () => {
    await using cluster = new RealCluster();
    const sfx = cluster.suffix;
    const serverPod = await cluster.pod(E2E_NAMESPACE, `tgs-${sfx}`, [{ name: "server" }]);
    const server = await cluster.actor(serverPod, "server", `tgs-${sfx}`);
    const lateComm = `tgl-${sfx}`;
    const comms = [server.comm, lateComm];
    const { sock: listener, port } = await server.do("listen 0.0.0.0");
    const serverIP = serverPod.status!.podIP!;
    const latePodName = `tgl-${sfx}`;

    const runs: CliRun[] = [];
    cluster.defer(async () => {
      for (const run of runs) run.child.kill("SIGINT");
      for (const run of runs) await run.finish(30_000).catch(() => {});
    });
    const every = await nodeMode([]);
    runs.push(every);
    // Selected before the pod exists.
    const selected = await nodeMode(["-n", E2E_NAMESPACE, "-p", latePodName]);
    runs.push(selected);

    // Its container's process connects as soon as python has started.
    await cluster.pod(E2E_NAMESPACE, latePodName, [{
      name: "late",
      command: ["python3", "-c", LATE_CLIENT, lateComm, serverIP, String(port)],
    }]);
    const sport = await eventually("the late pod's connection", async () => {
      const log = await cluster.core.readNamespacedPodLog({
        name: latePodName,
        namespace: E2E_NAMESPACE,
      });
      return /^\d+\n/.test(log) ? Number(log.trim()) : undefined;
    }, 60);
    const accepted = await server.do(`accept ${listener}`);
    await server.do(`wait_eof ${accepted.sock}`);
    await server.do(`close ${accepted.sock}`);
    const latePod = await cluster.core.readNamespacedPod({
      name: latePodName,
      namespace: E2E_NAMESPACE,
    });
    const hostName = Deno.readTextFileSync("/etc/hostname").trim();
    const l = connectionEvents(
      hostName,
      podParty(latePod, "late", { nodePid: containerNodePid(latePod, "late", 1), comm: lateComm }),
      podParty(serverPod, "server", server),
      { sport, daddr: serverIP, dport: port, serverPort: port },
      false,
    );
    const expected = new Map([[every, [...l.client, ...l.server]], [selected, l.client]]);
    for (const [run, events] of expected) {
      await run.waitFor(
        () => seenEvents(run, comms, false).length >= events.length,
        `${events.length} events`,
        30_000,
      ).catch(() => {}); // compared below, with what is missing
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const [run, events] of expected) {
      assertEquals(seenEvents(run, comms, false), sortedEvents(events), run.stderr);
    }
    for (const run of runs.splice(0)) {
      run.child.kill("SIGINT");
      assertEquals((await run.finish(30_000)).code, 0, run.stderr);
    }
  },
);
