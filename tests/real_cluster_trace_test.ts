/**
 * `trace tcp --cluster` against the REAL cluster (TCPGADGET_E2E_KUBECONFIG,
 * the one tests/real_cluster starts on this machine): real pods of the
 * workload image talk over the pod network, directly and through a real
 * Service (kube-proxy's iptables rules), and every event is checked
 * exactly: node, namespace, pod, container, container and pod ids, the PID
 * as the node sees it (from the container's cgroup), command, addresses,
 * ports, and the pod or service each address belongs to. Several runs
 * trace at once with different selections (-A, -n, -p, -c, -l, --host),
 * each ended a different way (Ctrl-C, SIGTERM, SIGHUP, the reader of its
 * output going away, --timeout), each checked through the API to leave no
 * pod.
 *
 * Skipped, saying why, without TCPGADGET_E2E_KUBECONFIG, or when the
 * cluster is not the one of tests/real_cluster (node PIDs are read from
 * this machine's cgroups).
 *
 * @module
 */

import { assertEquals } from "./helpers/assert.ts";
import { execText } from "./helpers/cluster.ts";
import {
  connectionEvents,
  E2E_AGENT_IMAGE,
  E2E_BASELINE_NAMESPACE,
  E2E_NAMESPACE,
  hostParty,
  podParty,
  RealCluster,
  realClusterTest,
  roundTrip,
  seenEvents,
  sortedEvents,
  stderrLines,
  tracingOneNode,
} from "./helpers/real_cluster.ts";
import { DEFAULT_AGENT_IMAGE } from "../k8s/api/agent_pod.ts";
import { sha256File } from "../k8s/api/self_copy.ts";

const FILE = "tests/real_cluster_trace_test.ts";

realClusterTest(
  FILE,
  "real cluster: trace tcp --cluster names real pods, containers, node PIDs, addresses, pods and services; -A, -n, -p, -c, -l, --host select; every way of ending leaves no pod",
  { local: true },
  async () => {
    await using cluster = new RealCluster();
    const sfx = cluster.suffix;
    // The same labels in two namespaces: -l applies within the namespace.
    const role = { "tcpgadget-e2e/role": `client-${sfx}` };
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
      service,
      clusterIP,
      node,
      nodeIP,
    } = await cluster.serverAndClients(role);

    // Side by side, so that their pods and uploads overlap.
    const all = await cluster.startRun(["-A", "-o", "json"]);
    const alphaAndHost = await cluster.startRun([
      "-p",
      webPod.metadata!.name!,
      "-c",
      "alpha",
      "--host",
      "-o",
      "json",
    ]);
    const otherNamespace = await cluster.startRun(["-n", E2E_BASELINE_NAMESPACE, "-o", "json"]);
    const labelled = await cluster.startRun([
      "-l",
      `tcpgadget-e2e/role=client-${sfx}`,
      "-o",
      "json",
    ]);
    const timed = await cluster.startRun(["-A", "--timeout", "5", "-o", "json"]);
    const runs = [all, alphaAndHost, otherNamespace, labelled, timed];
    await Promise.all(runs.map(({ run }) => tracingOneNode(run)));

    // What the agent pods are, as the real API server stored them.
    const [agentPod] = await cluster.agentPodObjects(all.runId);
    const spec = agentPod.spec!;
    const plain = <T>(value: T): T => JSON.parse(JSON.stringify(value));
    assertEquals(
      plain({
        labels: agentPod.metadata!.labels,
        annotations: agentPod.metadata!.annotations,
        nodeName: spec.nodeName,
        hostPID: spec.hostPID,
        restartPolicy: spec.restartPolicy,
        automountServiceAccountToken: spec.automountServiceAccountToken,
        enableServiceLinks: spec.enableServiceLinks,
        activeDeadlineSeconds: spec.activeDeadlineSeconds,
        terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds,
        tolerations: spec.tolerations,
        image: spec.containers[0].image,
        securityContext: spec.containers[0].securityContext,
        volumes: spec.volumes,
      }),
      {
        labels: {
          "app.kubernetes.io/managed-by": "tcpgadget",
          "app.kubernetes.io/name": "tcpgadget-agent",
          "tcpgadget.io/run": all.runId,
        },
        annotations: { "tcpgadget.io/node": node },
        nodeName: node,
        hostPID: true,
        restartPolicy: "Never",
        automountServiceAccountToken: false,
        enableServiceLinks: false,
        activeDeadlineSeconds: 6 * 3600,
        terminationGracePeriodSeconds: 1,
        tolerations: [{ operator: "Exists" }],
        image: E2E_AGENT_IMAGE ?? DEFAULT_AGENT_IMAGE,
        securityContext: { privileged: true },
        volumes: [
          { name: "host", hostPath: { path: "/", type: "" } },
          { name: "work", emptyDir: {} },
        ],
      },
    );
    // --timeout 5: the pod's deadline is the timeout plus 10 minutes.
    const [timedPod] = await cluster.agentPodObjects(timed.runId);
    assertEquals(timedPod.spec!.activeDeadlineSeconds, 5 + 600);
    // The upload is the very program: the same bytes in the pod as here.
    const binary = Deno.env.get("TCPGADGET_TEST_BINARY");
    const [uploaded, local] = binary ? ["tcpgadget", binary] : ["deno", Deno.execPath()];
    assertEquals(
      await execText(cluster, all.namespace, agentPod.metadata!.name!, "agent", [
        "sha256sum",
        `/tmp/tcpgadget/${uploaded}`,
      ]),
      `${await sha256File(local)}  /tmp/tcpgadget/${uploaded}\n`,
    );

    // Pod to pod, pod to service, from another namespace, from the host.
    const svc = { kind: "svc" as const, namespace: E2E_NAMESPACE, name: service.metadata!.name! };
    const serverIP = serverPod.status!.podIP!;
    const serverSide = podParty(serverPod, "server", server);
    const alphaSide = podParty(webPod, "alpha", alpha);
    const betaSide = podParty(webPod, "beta", beta);
    const otherSide = podParty(otherPod, "main", other);
    const hostSide = hostParty(host, nodeIP);
    const direct = (sport: number) => ({ sport, daddr: serverIP, dport: port, serverPort: port });
    const alphaConn = direct(await roundTrip(alpha, server, listener, serverIP, port));
    const betaConn = {
      sport: await roundTrip(beta, server, listener, clusterIP, 80),
      daddr: clusterIP,
      dport: 80,
      serverPort: port,
      dstEndpoint: svc,
    };
    const otherConn = direct(await roundTrip(other, server, listener, serverIP, port));
    const hostConn = direct(await roundTrip(host, server, listener, serverIP, port));
    const events = (client: typeof alphaSide, connection: typeof betaConn | typeof alphaConn) =>
      connectionEvents(node, client, serverSide, connection, true);
    const a = events(alphaSide, alphaConn);
    const b = events(betaSide, betaConn);
    const o = events(otherSide, otherConn);
    const h = events(hostSide, hostConn);
    const expected = new Map([
      // -A: every pod's processes, not the host's.
      [all, [...a.client, ...a.server, ...b.client, ...b.server, ...o.client, ...o.server]],
      // -p/-c in the context's namespace, and with --host the host's processes too.
      [alphaAndHost, [...a.client, ...h.client]],
      // -n: that namespace only.
      [otherNamespace, [...o.client]],
      // -l: pods with the labels, in the context's namespace (not the other namespace's).
      [labelled, [...a.client, ...b.client]],
    ]);
    // The server accepted the host's connection too: in -A, as a pod's process.
    expected.get(all)!.push(...h.server);
    for (const [{ run }, events] of expected) {
      await run.waitFor(
        () => seenEvents(run, comms, true).length >= events.length,
        `${events.length} events`,
        60_000,
      );
    }
    // Time for an event that should not be there to show up.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const [{ run }, events] of expected) {
      assertEquals(seenEvents(run, comms, true), sortedEvents(events), run.stderr);
    }

    all.run.child.kill("SIGINT");
    alphaAndHost.run.child.kill("SIGTERM");
    otherNamespace.run.child.kill("SIGHUP");
    await labelled.run.closeStdout();
    // (The --timeout run ends by itself: it is not signalled.)
    for (const { run, runId } of runs) {
      assertEquals((await run.finish(60_000)).code, 0, run.stderr);
      // tcpgadget waits until its pods are gone before it exits.
      assertEquals(await cluster.agentPods(runId), [], run.stderr);
      assertEquals(stderrLines(run.stderr), [
        `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
        "tcpgadget: tracing TCP connections on 1 node",
      ]);
    }
  },
);
