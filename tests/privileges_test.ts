/**
 * Running without root: tcpgadget run as a user that is not root (uid
 * 4242, without an entry in /etc/passwd) with exactly the capabilities the
 * README lists, or with one missing. The message names what is missing;
 * with the documented set it traces real connections, attributes one open
 * before it started (the task_file iterator), names a fake container and
 * selects it with -n; without CAP_SYS_PTRACE it says what it cannot do.
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { assertProgramsGone, programIdsHeldBy } from "./helpers/bpf_programs.ts";
import { CliRun, inPrivateMounts } from "./helpers/cli.ts";
import { availableHierarchies, containersSkipReason, FakeNode } from "./helpers/containers.ts";
import { asUser, otherUserSkipReason } from "./helpers/privileges.ts";
import { ensureTracefs } from "../core/system.ts";

const FILE = "privileges_test.ts";
const USER = 4242;
const SKIP = otherUserSkipReason();
if (SKIP) console.warn(`SKIPPED (${FILE}): ${SKIP}`);
const CONTAINERS_SKIP = SKIP === undefined ? containersSkipReason() : undefined;
if (CONTAINERS_SKIP) console.warn(`SKIPPED (${FILE}, containers): ${CONTAINERS_SKIP}`);

/** Capabilities the README documents for tracing and naming containers without root. */
const DOCUMENTED = ["bpf", "perfmon", "dac_read_search", "sys_ptrace"];

/** How tracefs looks to a process that may not read it: "<path> is mode 0700, owned by uid 0". */
function tracefsDescription(): string {
  // Mounted (by this root process) if it was not: tcpgadget leaves it so too.
  const path = ensureTracefs();
  const { mode, uid } = Deno.statSync(path);
  return `${path} is mode ${(mode! & 0o7777).toString(8).padStart(4, "0")}, owned by uid ${uid}`;
}

Deno.test({
  name: "privileges: without root, the one line says which capabilities are missing",
  ignore: SKIP !== undefined,
  async fn() {
    const tracefs =
      `CAP_DAC_READ_SEARCH to read tracepoint ids from tracefs (${tracefsDescription()})`;
    const load = (caps: string) => `${caps} (or CAP_SYS_ADMIN) to load BPF programs`;
    const root = "run tcpgadget as root (sudo)";
    const cases: [string[], string[], string][] = [
      [[], asUser(USER, []), `${load("CAP_BPF and CAP_PERFMON")}; ${tracefs}`],
      [[], asUser(USER, ["bpf"]), `${load("CAP_PERFMON")}; ${tracefs}`],
      // tracefs is mounted, mode 0700: it is not "not mounted".
      [[], asUser(USER, ["bpf", "perfmon"]), tracefs],
      [[], asUser(USER, ["sys_admin"]), tracefs],
      [
        [],
        asUser(
          USER,
          ["bpf", "perfmon", "dac_read_search"],
          "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; true",
        ),
        "CAP_SYS_ADMIN to mount tracefs, which is not mounted (or mount it: 'mount -t tracefs tracefs /sys/kernel/tracing')",
      ],
      // Still uid 0, but with every capability dropped.
      [
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"],
        [],
        load("CAP_BPF and CAP_PERFMON"),
      ],
    ];
    for (const [prefix, wrapper, missing] of cases) {
      const words = [...inPrivateMounts("true"), ...prefix, ...wrapper];
      const result = await CliRun.run(["trace", "tcp"], { wrapper: words });
      assertEquals(
        result,
        { code: 1, stdout: "", stderr: `tcpgadget: missing privileges: ${missing}; ${root}\n` },
        wrapper.join(" "),
      );
    }
  },
});

/** One connection of an actor to itself over loopback: C, A, X, X; returns the port. */
async function selfConnection(actor: Actor): Promise<number> {
  const listener = await actor.do("listen 127.0.0.1");
  const connected = await actor.do(`connect 127.0.0.1 ${listener.port}`);
  const accepted = await actor.do(`accept ${listener.sock}`);
  await actor.do(`close ${connected.sock}`);
  await actor.do(`close ${accepted.sock}`);
  return listener.port;
}

Deno.test({
  name:
    "privileges: as a user with CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE: traces, names containers, -n selects",
  ignore: SKIP !== undefined || CONTAINERS_SKIP !== undefined,
  async fn() {
    await using node = FakeNode.create();
    Deno.chmodSync(node.root, 0o755);
    // cgroup v1 where there is one: only /proc/<pid>/ns/mnt can name it then.
    const hierarchies = availableHierarchies().includes("v1") ? ["v1" as const] : ["v2" as const];
    const web = await node.start({
      namespace: "shop",
      pod: "web-0",
      container: "nginx",
      comm: "tg-priv-web",
      driver: "systemd",
      qos: "burstable",
      runtime: "containerd",
      hierarchies,
    });
    const host = await Actor.start("tg-priv-host");
    try {
      // Opened before tracing: its close is attributed by the iterator's scan.
      const before = await host.do("listen 127.0.0.1");
      const early = await host.do(`connect 127.0.0.1 ${before.port}`);
      const earlyAccepted = await host.do(`accept ${before.sock}`);

      for (const filter of [[], ["-n", "shop"]]) {
        const run = CliRun.start(
          ["trace", "tcp", "-o", "json", "--host-root", node.root, "--node-name", "n", ...filter],
          { wrapper: asUser(USER, DOCUMENTED) },
        );
        await run.ready();
        const programs = programIdsHeldBy(run.pid);
        assert(programs.length > 0, "the user's tracer holds its programs");
        const webPort = await selfConnection(web.actor);
        const hostPort = await selfConnection(host);
        if (filter.length === 0) await host.do(`close ${early.sock}`);
        await new Promise((resolve) => setTimeout(resolve, 300));
        run.child.kill("SIGINT");
        assertEquals((await run.finish()).code, 0, run.stderr);
        await assertProgramsGone(programs);
        assertEquals(run.stderr, "tcpgadget: tracing TCP connections (attached via tp_btf)\n");

        const seen = run.json().filter((e) =>
          [webPort, hostPort, before.port].some((port) => e.sport === port || e.dport === port)
        ).map((e) =>
          `${e.operation} ${e.pid} ${e.comm} ${e.namespace}/${e.pod}/${e.container} ${
            e.dport === before.port || e.sport === before.port ? "early" : ""
          }`.trim()
        ).sort();
        const named = (operation: string) =>
          `${operation} ${web.actor.pid} tg-priv-web shop/web-0/nginx`;
        const hostEvent = (operation: string) => `${operation} ${host.pid} tg-priv-host <>/<>/<>`;
        const expected = [
          named("accept"),
          named("close"),
          named("close"),
          named("connect"),
          ...(filter.length > 0 ? [] : [
            hostEvent("accept"),
            hostEvent("close"),
            hostEvent("close"),
            `${hostEvent("close")} early`,
            hostEvent("connect"),
          ]),
        ].sort();
        assertEquals(seen, expected, `flags: ${filter.join(" ")}`);
      }
      await host.do(`close ${earlyAccepted.sock}`);
    } finally {
      await host.stop();
    }
  },
});

Deno.test({
  name: "privileges: without CAP_SYS_PTRACE, tracing works and the loss is said once",
  ignore: SKIP !== undefined,
  async fn() {
    const host = await Actor.start("tg-priv-noptr");
    try {
      const run = CliRun.start(["trace", "tcp", "-o", "json", "--connect-only"], {
        wrapper: asUser(USER, ["bpf", "perfmon", "dac_read_search"]),
      });
      await run.ready();
      const port = await selfConnection(host);
      await run.waitFor(() => run.json().some((e) => e.dport === port), "the connect");
      run.child.kill("SIGINT");
      assertEquals((await run.finish()).code, 0, run.stderr);
      assertEquals(
        run.json().filter((e) => e.dport === port).map((e) => `${e.pid} ${e.comm}`),
        [`${host.pid} tg-priv-noptr`],
      );
      assertEquals(run.stderr.split("\n").filter(Boolean), [
        "tcpgadget: without CAP_SYS_PTRACE, other users' processes are placed in containers only by their cgroup v2 id, and -n, -p and -c cannot select them",
        "tcpgadget: tracing TCP connections (attached via tp_btf)",
      ]);
    } finally {
      await host.stop();
    }
  },
});
