/**
 * Node mode on a (fake) Kubernetes node, through the command line: fake
 * containers (processes in their own mount namespaces and kubelet-style
 * cgroups, with kubelet's log links under a temporary host root) make real
 * connections; `trace tcp --host-root` names their namespace, pod and
 * container, and `-n`, `-p`, `-c`, `--host` select them in the kernel.
 */

import { Actor } from "./helpers/actors.ts";
import { assertEquals } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { containersSkipReason, FakeNode } from "./helpers/containers.ts";
import { BPF_SKIP_REASON, needsBpf } from "./helpers/privileges.ts";

const FILE = "cli_containers_test.ts";
const containersReason = BPF_SKIP_REASON === undefined ? containersSkipReason() : undefined;
if (containersReason) console.warn(`SKIPPED (${FILE}): ${containersReason}`);
const ignore = needsBpf(FILE) || containersReason !== undefined;

/** One connection of an actor to itself over loopback: C, A, X, X, all its own. */
async function selfConnection(actor: Actor): Promise<number> {
  const listener = await actor.do("listen 127.0.0.1");
  const connected = await actor.do(`connect 127.0.0.1 ${listener.port}`);
  const accepted = await actor.do(`accept ${listener.sock}`);
  await actor.do(`close ${connected.sock}`);
  await actor.do(`close ${accepted.sock}`);
  return listener.port;
}

Deno.test({
  name: "cli: --host-root names pods and containers; -n, -p, -c and --host filter in the kernel",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    const web = await node.start({
      namespace: "shop",
      pod: "web-0",
      container: "nginx",
      comm: "tg-web",
      driver: "systemd",
      qos: "burstable",
      runtime: "containerd",
      hierarchies: ["v2"],
    });
    const db = await node.start({
      namespace: "other",
      pod: "db-0",
      container: "postgres",
      comm: "tg-db",
      driver: "cgroupfs",
      qos: "guaranteed",
      runtime: "crio",
      hierarchies: ["v2"],
    });
    const host = await Actor.start("tg-host");
    try {
      const cases: [string[], string[]][] = [
        [[], ["tg-db", "tg-host", "tg-web"]],
        [["-n", "shop"], ["tg-web"]],
        [["-p", "db-0"], ["tg-db"]],
        [["-c", "nginx", "-n", "shop"], ["tg-web"]],
        [["-n", "shop", "--host"], ["tg-host", "tg-web"]],
        [["-n", "nowhere"], []],
      ];
      for (const [flags, comms] of cases) {
        const run = CliRun.start([
          "trace",
          "tcp",
          "-o",
          "json",
          "--host-root",
          node.root,
          "--node-name",
          "node-a",
          ...flags,
        ]);
        await run.ready();
        const ports = [
          await selfConnection(web.actor),
          await selfConnection(db.actor),
          await selfConnection(host),
        ];
        await new Promise((resolve) => setTimeout(resolve, 300));
        run.child.kill("SIGINT");
        assertEquals((await run.finish()).code, 0, run.stderr);
        const events = run.json().filter((e) =>
          ports.includes(e.dport as number) ||
          ports.includes(e.sport as number)
        );
        const seen = [...new Set(events.map((e) => e.comm as string))].sort();
        assertEquals(seen, comms, `flags ${flags.join(" ")}`);
        for (const event of events) {
          assertEquals(event.node, "node-a");
          const expected = event.comm === "tg-web"
            ? web.expected
            : event.comm === "tg-db"
            ? db.expected
            : { namespace: "<>", pod: "<>", container: "<>", containerId: "", podUid: "" };
          assertEquals(
            {
              namespace: event.namespace,
              pod: event.pod,
              container: event.container,
              containerId: event.containerid,
              podUid: event.poduid,
            },
            {
              namespace: expected.namespace || "<>",
              pod: expected.pod || "<>",
              container: expected.container || "<>",
              containerId: expected.containerId,
              podUid: expected.podUid,
            },
          );
        }
        // Every kind, each once per connection, for the processes shown.
        assertEquals(events.length, comms.length * 4, `flags ${flags.join(" ")}`);
      }
    } finally {
      await host.stop();
    }
  },
});

Deno.test({
  name: "cli: -l without the Kubernetes API is a clear error",
  async fn() {
    const result = await CliRun.run(["trace", "tcp", "-l", "app=web"]);
    assertEquals(result.code, 2);
    assertEquals(
      result.stderr,
      "tcpgadget: --selector needs the Kubernetes API for pod labels: give --kubeconfig (or --in-cluster), or use cluster mode (--cluster)\n",
    );
  },
});
