/**
 * What a run leaves when its client is killed, on the REAL cluster
 * (TCPGADGET_E2E_KUBECONFIG): its pods stay, each with its deadline
 * (activeDeadlineSeconds), until `tcpgadget cleanup` deletes them; and the
 * real kubelet does end an agent pod at its deadline, with what was exec'd
 * into it. (The other ways a run ends are checked to leave no pod in
 * tests/real_cluster_trace_test.ts, tests/real_cluster_errors_test.ts and
 * tests/real_cluster_faults_test.ts.)
 *
 * The deadline is tested on a pod made from tcpgadget's own manifest
 * (k8s/api/agent_pod.ts) with a short deadline, rather than through a
 * hidden flag of the command line: the command line's part is the field,
 * checked on the pods a killed run leaves; the kubelet's part is ending
 * the pod, which does not depend on how long the deadline is.
 *
 * @module
 */

import { Writable } from "node:stream";
import * as k8s from "@kubernetes/client-node";
import { assert, assertEquals } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import {
  agentProcesses,
  E2E_AGENT_IMAGE,
  eventually,
  isLocalTestCluster,
  randomSuffix,
  RealCluster,
  realClusterTest,
} from "./helpers/real_cluster.ts";
import { agentPod, DEFAULT_AGENT_IMAGE } from "../k8s/api/agent_pod.ts";

const FILE = "tests/real_cluster_cleanup_test.ts";

function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) [ZX]/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

realClusterTest(
  FILE,
  "real cluster: a client killed with SIGKILL leaves its pods with their deadlines, and its payload directory; 'tcpgadget cleanup' deletes them and their processes end",
  {},
  async () => {
    await using cluster = new RealCluster();
    // The clients' temporary directory: what they leave is seen there.
    const tmp = await Deno.makeTempDir({ prefix: "tcpgadget-e2e-tmp-" });
    cluster.defer(() => Deno.remove(tmp, { recursive: true }));
    const env = { TMPDIR: tmp };
    const left = () => [...Deno.readDirSync(tmp)].map((entry) => entry.name);
    const runs = [
      await cluster.startRun(["-A", "-o", "json"], { env }),
      await cluster.startRun(["-A", "--timeout", "100", "-o", "json"], { env }),
    ];
    const namespace = runs[0].namespace;
    for (const { run } of runs) {
      const line = "tracing TCP connections on 1 node";
      await run.waitFor(() => run.stderr.includes(line), line, 240_000);
    }
    const pods = (await Promise.all(runs.map(({ runId }) => cluster.agentPodObjects(runId))))
      .flat();
    // The tracers in the pods, as the node sees them (on this machine only).
    const tracers = isLocalTestCluster() ? pods.flatMap((pod) => agentProcesses(pod)) : [];
    if (isLocalTestCluster()) assertEquals(tracers.length, 2, `tracers: ${tracers}`);
    for (const { run } of runs) {
      run.child.kill("SIGKILL");
      assertEquals((await run.finish()).signal, "SIGKILL");
    }

    // Nothing deleted them: they stay, each until its deadline (6 h, or
    // --timeout plus 10 minutes)...
    const names = pods.map((pod) => `${namespace}/${pod.metadata!.name}`).sort();
    assertEquals(await cluster.agentPods(), names);
    const deadlines = await Promise.all(
      runs.map(async ({ runId }) =>
        (await cluster.agentPodObjects(runId))[0].spec!.activeDeadlineSeconds
      ),
    );
    assertEquals(deadlines, [6 * 3600, 100 + 600]);
    assert(tracers.every(alive), "the tracers run on without their client");
    assertEquals(
      left().filter((name) => name.startsWith("tcpgadget-bundle-")).length,
      2,
      `${left()}`,
    );

    // ...or until cleanup, which waits until they are gone.
    const cleanup = (...args: string[]) =>
      CliRun.run(["cleanup", "--kubeconfig", cluster.kubeconfig, ...args], { env });
    const cleaned = await cleanup("--agent-namespace", namespace);
    assertEquals([cleaned.code, cleaned.stderr, cleaned.stdout], [
      0,
      "",
      names.map((name) => `deleted pod ${name}\n`).join(""),
    ]);
    assertEquals(await cluster.agentPods(), []);
    assertEquals(left(), []);
    assertEquals(tracers.filter(alive), [], "the tracers ended with their pods");
    const again = await cleanup("--agent-namespace", namespace);
    assertEquals([again.code, again.stdout, again.stderr], [
      0,
      `no tcpgadget pods found in namespace ${namespace}\n`,
      "",
    ]);
  },
);

realClusterTest(
  FILE,
  "real cluster: the kubelet ends tcpgadget's agent pod at its deadline, with a process exec'd into it; cleanup deletes what is left",
  { local: true },
  async () => {
    await using cluster = new RealCluster();
    const namespace = await cluster.agentNamespace();
    const [node] = await cluster.readyNodes();
    const runId = randomSuffix();
    const manifest = agentPod({
      runId,
      index: 0,
      node,
      namespace,
      image: E2E_AGENT_IMAGE ?? DEFAULT_AGENT_IMAGE,
      deadlineSeconds: 15,
    });
    await cluster.core.createNamespacedPod({ namespace, body: manifest });
    const name = manifest.metadata!.name!;
    await cluster.waitPod(namespace, name, (pod) => pod.status?.phase === "Running", "running");
    // As a tracer whose client vanished: exec'd, its stream gone, running on.
    // (With hostPID, the PID it prints is the node's.)
    let output = "";
    await new Promise<void>((resolve, reject) => {
      new k8s.Exec(cluster.kc).exec(
        namespace,
        name,
        "agent",
        ["sh", "-c", "sleep 900 >/dev/null 2>&1 & echo $!"],
        new Writable({
          write(chunk, _encoding, done) {
            output += chunk.toString();
            done();
          },
        }),
        null,
        null,
        false,
        () => resolve(),
      ).catch(reject);
    });
    const exec = Number(output.trim());
    assert(alive(exec), `exec'd process ${output}`);

    const ended = await cluster.waitPod(
      namespace,
      name,
      (pod) => pod.status?.phase === "Failed",
      "ended by its deadline",
      180,
    );
    assertEquals(ended.status!.reason, "DeadlineExceeded");
    await eventually("the exec'd process to end", () => alive(exec) ? undefined : true, 60);

    const cleaned = await CliRun.run([
      "cleanup",
      "--kubeconfig",
      cluster.kubeconfig,
      "--agent-namespace",
      namespace,
    ]);
    assertEquals([cleaned.code, cleaned.stderr, cleaned.stdout], [
      0,
      "",
      `deleted pod ${namespace}/${name}\n`,
    ]);
  },
);
