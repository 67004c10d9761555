/**
 * `tcpgadget egress watch` on a (fake) Kubernetes node, end to end: fake
 * containers (processes in mount namespaces and kubelet-style cgroups of
 * their own, with kubelet's files under a temporary host root) started
 * during the watch resolve names with a real DNS server (dnsmasq in a
 * network namespace) and connect at once; the watch judges the selected
 * pod's connections from its first one, and nothing of the pod it does not
 * select nor of the host's processes; it ends when its COMMAND (run here,
 * untraced) ends, with the report and the status.
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { type ContainerSpec, containersSkipReason, FakeNode } from "./helpers/containers.ts";
import { DNSMASQ_SKIP_REASON } from "./helpers/dnsmasq.ts";
import { DnsWorld } from "./helpers/dns_world.ts";
import { BPF_SKIP_REASON, needsBpf } from "./helpers/privileges.ts";
import type { Summary } from "../cli/egress/summary_report.ts";

const FILE = "egress_watch_test.ts";
const reason = BPF_SKIP_REASON === undefined
  ? containersSkipReason() ?? DNSMASQ_SKIP_REASON
  : undefined;
if (reason) console.warn(`SKIPPED (${FILE}): ${reason}`);
const ignore = needsBpf(FILE) || reason !== undefined;

Deno.test({
  name:
    "egress watch: pods that start during the watch are judged from their first connection, named from DNS; other pods and the host are not; COMMAND's end ends it",
  ignore,
  async fn() {
    await using w = await DnsWorld.create({
      names: { "allowed.test": "11", "forbidden.test": "12" },
    });
    await using node = FakeNode.create();
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-egress-watch-" });
    const host = await Actor.start("tg-host");
    try {
      const done = `${dir}/done`;
      const run = CliRun.start([
        "egress",
        "watch",
        "--host-root",
        node.root,
        "--node-name",
        "node-a",
        "-n",
        "shop",
        "--allow",
        `allowed.test:${w.port4}`,
        "--summary",
        `${dir}/summary.json`,
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        `while [ ! -e ${done} ]; do sleep 0.05; done; exit 6`,
      ]);
      await run.ready();
      const pod = (namespace: string, name: string, comm: string): ContainerSpec => ({
        namespace,
        pod: name,
        container: "app",
        comm,
        driver: "systemd",
        qos: "burstable",
        runtime: "containerd",
        hierarchies: ["v2"],
        binds: w.files("host"),
      });
      // Started now, each connects at once: first to a name, then to a forbidden one.
      const connects = async (actor: Actor) => {
        const made = [];
        for (const name of ["allowed.test", "forbidden.test"]) {
          const { addresses } = await actor.do(`resolve ${name} 4`);
          assertEquals(addresses, [w.address(name, 4)]);
          const connected = await actor.do(`connect ${addresses[0]} ${w.port4}`);
          assertEquals(connected.error, null);
          made.push({ name, address: addresses[0], sport: connected.sport });
        }
        return made;
      };
      const web = await node.start(pod("shop", "web-0", "tg-web"));
      const made = await connects(web.actor);
      const db = await node.start(pod("other", "db-0", "tg-db"));
      await connects(db.actor);
      await host.do(`connect ${w.address("forbidden.test", 4)} ${w.port4}`);
      // The watch's live events show them: then COMMAND may end.
      await run.waitFor(
        () => run.json().filter((e) => e.comm === "tg-web").length === 2,
        "the web pod's two connects on stdout",
      );
      await Deno.writeTextFile(done, "");
      const status = await run.finish();
      assertEquals(status.code, 3, run.stderr);

      const summary: Summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
      assertEquals([summary.commandStatus, summary.lostEvents], [6, 0]);
      const who = {
        node: "node-a",
        namespace: "shop",
        pod: "web-0",
        container: "app",
        command: "tg-web",
        pid: web.actor.pid,
      };
      assertEquals(
        summary.destinations.map(({ first: _, ...d }) => d),
        [
          {
            verdict: "violation",
            rule: null,
            host: "forbidden.test",
            hostSource: "dns",
            cnames: ["forbidden.test"],
            address: made[1].address,
            ipVersion: 4,
            port: w.port4,
            who,
            count: 1,
            failed: 0,
            errors: [],
          },
          {
            verdict: "allowed",
            rule: 1,
            host: "allowed.test",
            hostSource: "dns",
            cnames: ["allowed.test"],
            address: made[0].address,
            ipVersion: 4,
            port: w.port4,
            who,
            count: 1,
            failed: 0,
            errors: [],
          },
        ],
      );
      // Nothing else reached stdout: the other pod and the host are not selected.
      const shown = run.json().filter((e) => e.dport === w.port4);
      assertEquals(
        shown.map((e) => [e.pod, e.comm, e.sport, (e.dstname as { name: string }).name]),
        made.map((m) => ["web-0", "tg-web", m.sport, m.name]),
      );
      assertMatch(
        run.stderr,
        /^VIOLATION +no rule +forbidden\.test +dns +\S+ +\d+ +shop\/web-0\/app \(tg-web\) +1 +0 /m,
      );
      assert(!run.stderr.includes("tg-db") && !run.stderr.includes("tg-host"), run.stderr);
    } finally {
      await host.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
