/**
 * `trace tcp --cluster --agent-image` against the REAL cluster: the image
 * `tcpgadget image build` writes is pushed with skopeo to a real registry
 * (Debian's docker-registry, on loopback), the test cluster's containerd
 * pulls it from there, and the agent runs from it: nothing is prepared nor
 * uploaded, and the events are exact. An image that cannot be pulled, and
 * one that is not tcpgadget's, are each one line naming the node.
 *
 * Skipped, saying why, without TCPGADGET_E2E_KUBECONFIG, when the cluster
 * is not the one of tests/real_cluster (its containerd is told about the
 * registry through its hosts directory), or without docker-registry and
 * skopeo.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import {
  connectionEvents,
  containerNodePids,
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
import { forgetImages, Registry } from "./helpers/registry.ts";
import { state } from "./real_cluster/layout.ts";
import { VERSIONS } from "./real_cluster/versions.ts";

const FILE = "tests/real_cluster_agent_image_test.ts";
/** Where the image holds tcpgadget (the contract of `tcpgadget image build`). */
const PROGRAM = "/usr/local/bin/tcpgadget";

realClusterTest(
  FILE,
  "real cluster: --agent-image runs tcpgadget from an image pulled from a real registry: nothing prepared or uploaded, events exact; an image that cannot be pulled or is not tcpgadget's is one line",
  { local: true, registry: true },
  async () => {
    await using cluster = new RealCluster();
    const sfx = cluster.suffix;
    const { dir, archive } = await builtImage(cluster);
    // The run's own temporary directory: it must stay empty (no payload made).
    const tmp = `${dir}/tmp`;
    Deno.mkdirSync(tmp);
    await using registry = await Registry.start();
    const repository = `tcpgadget-e2e-${sfx}`;
    const digest = await registry.push(archive, `${repository}:test`);
    registry.declareTo(state.registryHosts);
    const image = `${registry.host}/${repository}:test`;
    cluster.defer(() => forgetImages(state.containerdSocket, `${registry.host}/`));

    const { serverPod, webPod, server, alpha, comms, listener, port, node } = await cluster
      .serverAndClients();
    const { run, runId } = await cluster.startRun(
      ["--agent-image", image, "-p", webPod.metadata!.name!, "-c", "alpha", "-o", "json"],
      { env: { TMPDIR: tmp } },
    );
    await tracingOneNode(run);

    // The pod runs the image, pulled from the registry, tcpgadget idling in it.
    const [agentPod] = await cluster.agentPodObjects(runId);
    const container = agentPod.spec!.containers[0];
    assertEquals(
      [container.image, container.command],
      [image, [PROGRAM, "agent", "idle", String(6 * 3600)]],
    );
    assertEquals(
      agentPod.status!.containerStatuses![0].imageID,
      `${registry.host}/${repository}@${digest}`,
    );
    // Its processes: the idle one and the tracer, both the image's program.
    const argvs = containerNodePids(agentPod, "agent").map((pid) =>
      Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean)
    );
    const after = (argv: string[]) => argv.slice(argv.indexOf(PROGRAM) + 1);
    assertEquals(
      argvs.map((argv) => after(argv).slice(0, 2).join(" ")).sort(),
      ["agent idle", "trace tcp"],
      JSON.stringify(argvs),
    );
    assert(argvs.every((argv) => argv.includes(PROGRAM)), JSON.stringify(argvs));

    const serverIP = serverPod.status!.podIP!;
    const sport = await roundTrip(alpha, server, listener, serverIP, port);
    const expected = connectionEvents(
      node,
      podParty(webPod, "alpha", alpha),
      podParty(serverPod, "server", server),
      { sport, daddr: serverIP, dport: port, serverPort: port },
      true,
    ).client;
    await run.waitFor(() => seenEvents(run, comms, true).length >= 2, "2 events", 60_000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assertEquals(seenEvents(run, comms, true), sortedEvents(expected), run.stderr);

    run.child.kill("SIGINT");
    assertEquals((await run.finish(60_000)).code, 0, run.stderr);
    assertEquals(await cluster.agentPods(runId), []);
    // No upload line: nothing was copied; and nothing was prepared here.
    assertEquals(stderrLines(run.stderr), ["tcpgadget: tracing TCP connections on 1 node"]);
    assertEquals([...Deno.readDirSync(tmp)], []);

    // A tag the registry does not have.
    const missing = `${registry.host}/${repository}:missing`;
    const unpulled = await cluster.startRun(["--agent-image", missing, "-A"]);
    assertEquals((await unpulled.run.finish(START_TIMEOUT_MS)).code, 1, unpulled.run.stderr);
    const [pullLine, ...pullRest] = stderrLines(unpulled.run.stderr);
    assertMatch(
      pullLine,
      new RegExp(
        `^tcpgadget: node ${node}: cannot pull image "${
          escape(missing)
        }": .*not found.* \\(--agent-image names another image\\)$`,
      ),
    );
    assertEquals(pullRest, ["tcpgadget: no node could be traced (the node failed)"]);
    assertEquals(await cluster.agentPods(unpulled.runId), []);

    // An image without tcpgadget (the workload image, already on the node).
    const other = await cluster.startRun(["--agent-image", VERSIONS.images.workload.name, "-A"]);
    assertEquals((await other.run.finish(START_TIMEOUT_MS)).code, 1, other.run.stderr);
    const [startLine, ...startRest] = stderrLines(other.run.stderr);
    assertMatch(
      startLine,
      new RegExp(
        `^tcpgadget: node ${node}: .*${
          escape(PROGRAM)
        }.*; an --agent-image must hold tcpgadget at ${
          escape(PROGRAM)
        } \\('tcpgadget image build' makes one\\)\\)?$`,
      ),
    );
    assertEquals(startRest, ["tcpgadget: no node could be traced (the node failed)"]);
    assertEquals(await cluster.agentPods(other.runId), []);
  },
);

/**
 * The image of this tcpgadget, built as a user builds it, in a directory
 * of the test's (removed with it): the directory and the archive.
 */
async function builtImage(cluster: RealCluster): Promise<{ dir: string; archive: string }> {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-agent-image-test-" });
  cluster.defer(() => Deno.remove(dir, { recursive: true }));
  const archive = `${dir}/tcpgadget-image.tar`;
  const built = await CliRun.run(["image", "build", "--output", archive]);
  assertEquals(built.code, 0, built.stderr);
  return { dir, archive };
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

realClusterTest(
  FILE,
  "real cluster: --agent-image from a registry that needs a password: refused without --image-pull-secret (one line saying so), pulled with it",
  { local: true, registry: true },
  async () => {
    await using cluster = new RealCluster();
    const sfx = cluster.suffix;
    const { archive } = await builtImage(cluster);
    await using registry = await Registry.start({ user: "ci", password: `pw-${sfx}` });
    const repository = `tcpgadget-e2e-${sfx}`;
    await registry.push(archive, `${repository}:private`);
    registry.declareTo(state.registryHosts);
    cluster.defer(() => forgetImages(state.containerdSocket, `${registry.host}/`));
    const image = `${registry.host}/${repository}:private`;

    // The pull secret, in the agent namespace (the kubelet reads it there).
    const namespace = await cluster.agentNamespace();
    await cluster.core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: "registry-ci" },
        type: "kubernetes.io/dockerconfigjson",
        data: { ".dockerconfigjson": btoa(registry.dockerConfigJson()) },
      },
    });

    const refused = await cluster.startRun(["--agent-image", image, "-A"]);
    assertEquals((await refused.run.finish(START_TIMEOUT_MS)).code, 1, refused.run.stderr);
    const [node] = await cluster.readyNodes();
    const [pullLine, ...rest] = stderrLines(refused.run.stderr);
    assertMatch(
      pullLine,
      new RegExp(
        `^tcpgadget: node ${node}: cannot pull image "${
          escape(image)
        }": .*401 Unauthorized.* \\(--agent-image names another image, or its registry needs --image-pull-secret\\)$`,
      ),
    );
    assertEquals(rest, ["tcpgadget: no node could be traced (the node failed)"]);

    const pulled = await cluster.startRun([
      "--agent-image",
      image,
      "--image-pull-secret",
      "registry-ci",
      "-A",
      "-o",
      "json",
    ]);
    await tracingOneNode(pulled.run);
    const [agentPod] = await cluster.agentPodObjects(pulled.runId);
    assertEquals(JSON.parse(JSON.stringify(agentPod.spec!.imagePullSecrets)), [{
      name: "registry-ci",
    }]);
    pulled.run.child.kill("SIGINT");
    assertEquals((await pulled.run.finish(60_000)).code, 0, pulled.run.stderr);
    assertEquals(stderrLines(pulled.run.stderr), ["tcpgadget: tracing TCP connections on 1 node"]);
    assertEquals(await cluster.agentPods(pulled.runId), []);
  },
);
