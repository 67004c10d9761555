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

/** A self connection's four events as `-o json` prints them (the keys tests compare). */
async function selfConnectionLines(actor: Actor): Promise<Record<string, unknown>[]> {
  const listener = await actor.do("listen 127.0.0.1");
  const connected = await actor.do(`connect 127.0.0.1 ${listener.port}`);
  const accepted = await actor.do(`accept ${listener.sock}`);
  await actor.do(`close ${connected.sock}`);
  await actor.do(`close ${accepted.sock}`);
  const at = { pid: actor.pid, comm: actor.comm, saddr: "127.0.0.1", daddr: "127.0.0.1" };
  const [server, client] = [listener.port, connected.sport];
  return [
    { ...at, operation: "connect", sport: client, dport: server },
    { ...at, operation: "accept", sport: server, dport: client },
    { ...at, operation: "close", sport: client, dport: server },
    { ...at, operation: "close", sport: server, dport: client },
  ];
}

/** The keys of a printed event that {@link selfConnectionLines} gives, in its order. */
function essentials(line: Record<string, unknown>): Record<string, unknown> {
  const { pid, comm, saddr, daddr, operation, sport, dport } = line;
  return { pid, comm, saddr, daddr, operation, sport, dport };
}

function sortedLines(lines: Record<string, unknown>[]): string[] {
  return lines.map((line) => JSON.stringify(line)).sort();
}

Deno.test({
  name:
    "cli: a container started while tracing with -n, -p or -c is shown from its first connection",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    const cases: string[][] = [["-n", "late"], ["-p", "job-28d5f"], ["-c", "worker"]];
    for (const [i, flags] of cases.entries()) {
      const run = CliRun.start(["trace", "tcp", "-o", "json", "--host-root", node.root, ...flags]);
      await run.ready();
      // Two containers start while tracing, one selected, one of another
      // pod, and each connects as soon as it runs: before any rescan.
      const [late, other] = await Promise.all([
        node.start({
          namespace: "late",
          pod: "job-28d5f",
          container: "worker",
          comm: `tg-late${i}`,
          driver: "systemd",
          qos: "besteffort",
          runtime: "containerd",
          hierarchies: ["v2"],
        }).then(async (c) => ({ c, lines: await selfConnectionLines(c.actor) })),
        node.start({
          namespace: "elsewhere",
          pod: "cron-5b7f4",
          container: "agent",
          comm: `tg-other${i}`,
          driver: "cgroupfs",
          qos: "burstable",
          runtime: "crio",
          hierarchies: ["v2"],
        }).then(async (c) => ({ c, lines: await selfConnectionLines(c.actor) })),
      ]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      run.child.kill("SIGINT");
      assertEquals((await run.finish()).code, 0, run.stderr);
      const pids = [late.c.actor.pid, other.c.actor.pid];
      const printed = run.json().filter((e) => pids.includes(e.pid as number));
      assertEquals(
        sortedLines(printed.map(essentials)),
        sortedLines(late.lines),
        `flags ${flags.join(" ")}`,
      );
      for (const event of printed) {
        assertEquals(
          [event.namespace, event.pod, event.container, event.containerid, event.poduid],
          ["late", "job-28d5f", "worker", late.c.containerId, late.c.podUid],
        );
      }
      await late.c.actor.stop();
      await other.c.actor.stop();
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
