/**
 * Node mode with the Kubernetes API (optional): against the test API
 * server, over TLS with a client certificate, the remote end of a
 * connection is named as a service (`s/ns/svc:port`) or a pod
 * (`p/ns/pod:port`), and `-l` selects pods by label, in the kernel.
 */

import { Actor } from "./helpers/actors.ts";
import { assertEquals } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { containersSkipReason, FakeNode } from "./helpers/containers.ts";
import { BPF_SKIP_REASON, needsBpf } from "./helpers/privileges.ts";
import { canUseMountNamespaces, startFakeApiServer } from "./kube_apiserver/mod.ts";

const FILE = "cli_api_test.ts";
const extra = BPF_SKIP_REASON === undefined
  ? containersSkipReason() ?? (canUseMountNamespaces() ? undefined : "no mount namespaces")
  : undefined;
if (extra) console.warn(`SKIPPED (${FILE}): ${extra}`);
const ignore = needsBpf(FILE) || extra !== undefined;

async function traced(
  args: string[],
  act: () => Promise<void>,
): Promise<Record<string, unknown>[]> {
  const run = CliRun.start(["trace", "tcp", "-o", "json", ...args]);
  await run.ready();
  await act();
  await new Promise((resolve) => setTimeout(resolve, 300));
  run.child.kill("SIGINT");
  assertEquals((await run.finish()).code, 0, run.stderr);
  return run.json();
}

Deno.test({
  name: "cli: --kubeconfig names remote services and pods (src/dst), -l selects by label",
  ignore,
  async fn() {
    await using api = await startFakeApiServer({ nodes: [{ name: "node-a" }] });
    const kubeconfig = `${api.dir}/node-mode.yaml`;
    await api.writeKubeconfig(kubeconfig);
    const service = api.addService({
      name: "web",
      namespace: "default",
      clusterIP: "127.2.0.10",
      ports: [{ port: 80 }],
    });
    assertEquals(service.spec.clusterIP, "127.2.0.10");
    // A pod the API knows, for its IP and its labels.
    const core = await import("@kubernetes/client-node");
    const kc = new core.KubeConfig();
    kc.loadFromFile(kubeconfig);
    const api4 = kc.makeApiClient(core.CoreV1Api);
    await api4.createNamespacedPod({
      namespace: "default",
      body: {
        metadata: { name: "shop-0", labels: { app: "shop" } },
        spec: { nodeName: "node-a", containers: [{ name: "main", image: "busybox" }] },
      },
    });
    const running = await api.waitForPod(
      "default",
      "shop-0",
      (pod) => pod.status?.phase === "Running",
    );
    const podIp = running.status.podIP as string;

    const server = await Actor.start("tg-svc-server");
    const client = await Actor.start("tg-svc-client");
    try {
      const listener = await server.do("listen 0.0.0.0");
      const port = listener.port as number;
      const events = await traced(["--kubeconfig", kubeconfig, "--connect-only"], async () => {
        for (const address of ["127.2.0.10", podIp, "127.0.0.1"]) {
          const connected = await client.do(`connect ${address} ${port}`);
          assertEquals(connected.error, null);
          await server.do(`accept ${listener.sock}`);
        }
      });
      const dsts = events.filter((e) => e.dport === port).map((e) =>
        `${e.daddr} ${JSON.stringify(e.dstendpoint ?? null)}`
      );
      assertEquals(dsts, [
        `127.2.0.10 {"kind":"svc","namespace":"default","name":"web"}`,
        `${podIp} {"kind":"pod","namespace":"default","name":"shop-0"}`,
        "127.0.0.1 null",
      ]);
    } finally {
      await server.stop();
      await client.stop();
    }

    // -l: a container of pod shop-0 (same UID as in the API) is selected,
    // another container is not.
    await using node = FakeNode.create();
    const shop = await node.start({
      namespace: "default",
      pod: "shop-0",
      container: "main",
      comm: "tg-shop",
      driver: "systemd",
      qos: "besteffort",
      runtime: "containerd",
      hierarchies: ["v2"],
      podUid: running.metadata.uid as string,
    });
    const other = await node.start({
      namespace: "default",
      pod: "other-0",
      container: "main",
      comm: "tg-other",
      driver: "systemd",
      qos: "besteffort",
      runtime: "containerd",
      hierarchies: ["v2"],
    });
    const ports: number[] = [];
    const events = await traced(
      ["--kubeconfig", kubeconfig, "--host-root", node.root, "-l", "app=shop"],
      async () => {
        for (const actor of [shop.actor, other.actor]) {
          const listener = await actor.do("listen 127.0.0.1");
          ports.push(listener.port);
          const connected = await actor.do(`connect 127.0.0.1 ${listener.port}`);
          const accepted = await actor.do(`accept ${listener.sock}`);
          await actor.do(`close ${connected.sock}`);
          await actor.do(`close ${accepted.sock}`);
        }
      },
    );
    const seen = events.filter((e) =>
      ports.includes(e.dport as number) ||
      ports.includes(e.sport as number)
    ).map((e) => `${e.comm} ${e.pod} ${e.operation}`).sort();
    assertEquals(seen, [
      "tg-shop shop-0 accept",
      "tg-shop shop-0 close",
      "tg-shop shop-0 close",
      "tg-shop shop-0 connect",
    ]);
  },
});
