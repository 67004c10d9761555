/**
 * Container enrichment and container filters in the real kernel: test
 * actors in mount namespaces of their own, in cgroups named as kubelet and
 * the runtimes name them (both drivers, cgroup v1 and v2), with kubelet's
 * log links under a temporary host root. A real TcpTracer reports their
 * connections; the resolver and the enricher name them; the container
 * filter decides about each from its first event (also for containers that
 * start while tracing, and for a namespace whose inode number an ended one
 * had), and the kernel then lets through only those selected. A container
 * that poses, by its cgroup path, as another pod keeps its own name.
 */

import type { TcpEvent } from "../core/event.ts";
import { TcpTracer, type TracerOptions } from "../core/tracer.ts";
import { ContainerEnricher } from "../k8s/node/container_enricher.ts";
import {
  ContainerResolver,
  type ContainerResolverOptions,
} from "../k8s/node/container_resolver.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import { containerSelection, type KubernetesFilter, matchesFilter } from "../k8s/pod_filter.ts";
import { MountNamespaceFilter } from "../k8s/node/mntns_filter.ts";
import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { assertSameEvents, collectEvents, type ExpectedEvent } from "./helpers/collect.ts";
import {
  availableHierarchies,
  type ContainerSpec,
  containersSkipReason,
  type FakeContainer,
  FakeNode,
  type Hierarchy,
} from "./helpers/containers.ts";
import { BPF_SKIP_REASON, needsBpf } from "./helpers/privileges.ts";

const FILE = "containers_test.ts";
const ignore = needsBpf(FILE) || skipForContainers();

function skipForContainers(): boolean {
  const reason = BPF_SKIP_REASON === undefined ? containersSkipReason() : undefined;
  if (reason !== undefined) console.warn(`SKIPPED (${FILE}): ${reason}`);
  return reason !== undefined;
}

const HIERARCHIES = ignore ? [] : availableHierarchies();
const HAS_V1 = HIERARCHIES.includes("v1");
if (!ignore && !HAS_V1) {
  console.warn(`NOTE (${FILE}): no cgroup v1 hierarchy here: v1 layouts are not tested`);
}

/** v1 if this machine has it, else v2: for layouts meant for v1. */
function v1OrV2(...wanted: Hierarchy[]): Hierarchy[] {
  const usable = wanted.filter((h) => HIERARCHIES.includes(h));
  return usable.length > 0 ? usable : ["v2"];
}

type Layout = Pick<ContainerSpec, "driver" | "qos" | "runtime" | "hierarchies">;

/** Every cgroup naming the resolver must understand. */
const LAYOUTS: Layout[] = [
  { driver: "cgroupfs", qos: "burstable", runtime: "containerd", hierarchies: v1OrV2("v1") },
  { driver: "cgroupfs", qos: "guaranteed", runtime: "crio", hierarchies: v1OrV2("v1", "v2") },
  { driver: "cgroupfs", qos: "besteffort", runtime: "docker", hierarchies: ["v2"] },
  { driver: "systemd", qos: "besteffort", runtime: "containerd", hierarchies: ["v2"] },
  { driver: "systemd", qos: "guaranteed", runtime: "crio", hierarchies: ["v2"] },
  { driver: "systemd", qos: "burstable", runtime: "docker", hierarchies: v1OrV2("v1", "v2") },
  { driver: "systemd", qos: "burstable", runtime: "crio", hierarchies: v1OrV2("v1") },
];

/** What the enricher should add to events of each pid (host processes: empty). */
type Expectations = Map<number, FakeContainer["expected"]>;

const HOST_FIELDS = { namespace: "", pod: "", container: "", containerId: "", podUid: "" };

function fieldsOf(event: TraceEvent) {
  return {
    namespace: event.namespace,
    pod: event.pod,
    container: event.container,
    containerId: event.containerId,
    podUid: event.podUid,
  };
}

function assertNamed(events: TraceEvent[], expected: Expectations): void {
  for (const event of events) {
    assertEquals(
      fieldsOf(event),
      expected.get(event.pid) ?? HOST_FIELDS,
      `${event.type} of ${event.comm} (pid ${event.pid})`,
    );
  }
}

async function withTracer(
  options: TracerOptions,
  body: (tracer: TcpTracer) => Promise<void>,
): Promise<void> {
  const tracer = TcpTracer.open(options);
  try {
    await body(tracer);
  } finally {
    await tracer.close();
  }
}

function resolverFor(node: FakeNode, options: ContainerResolverOptions = {}) {
  return new ContainerResolver({ hostRoot: node.root, ...options });
}

/** One connection from `client` to `server`'s new listener, closed by the client. Returns the port. */
async function connection(client: Actor, server: Actor): Promise<number> {
  const listener = await server.do("listen 127.0.0.1");
  const connected = await client.do(`connect 127.0.0.1 ${listener.port}`);
  assertEquals(connected.error, null);
  const accepted = await server.do(`accept ${listener.sock}`);
  await client.do(`close ${connected.sock}`);
  await server.do(`wait_eof ${accepted.sock}`);
  await server.do(`close ${accepted.sock}`);
  await server.do(`close ${listener.sock}`);
  return listener.port;
}

async function hostActor(comm: string): Promise<Actor & AsyncDisposable> {
  const actor = await Actor.start(comm);
  return Object.assign(actor, { [Symbol.asyncDispose]: () => actor.stop() });
}

Deno.test({
  name: "containers: connect, accept and close of containers in every cgroup layout are named",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    const server = await node.start({
      namespace: "shop",
      pod: "web-7d4b9c-xk2p",
      container: "nginx",
      comm: "tg-ct-server",
      driver: "systemd",
      qos: "burstable",
      runtime: "containerd",
      hierarchies: ["v2"],
    });
    const clients: FakeContainer[] = [];
    for (const [i, layout] of LAYOUTS.entries()) {
      clients.push(
        await node.start({
          ...layout,
          namespace: `team-${i}`,
          pod: `api.v${i}-5f7c9-abcde`,
          container: `client-${layout.driver}-${layout.runtime}`,
          comm: `tg-ct-client${i}`,
        }),
      );
    }
    await using host = await hostActor("tg-ct-host");
    const expected: Expectations = new Map(node.containers.map((c) => [c.actor.pid, c.expected]));
    // No refresh: every event is named on the event path, from its own pid.
    const enricher = new ContainerEnricher(resolverFor(node), "node-1");

    await withTracer({}, async (tracer) => {
      const ports: number[] = [];
      for (const client of [...clients.map((c) => c.actor), host]) {
        ports.push(await connection(client, server.actor));
      }
      const events = (await collectEvents(tracer, ports, 4 * ports.length)).map((e) =>
        enricher.enrich(e)
      );
      assertEquals(events.length, 4 * ports.length);
      assertNamed(events, expected);
      for (const client of clients) {
        const types = events.filter((e) => e.pid === client.actor.pid).map((e) => e.type).sort();
        assertEquals(types, ["C", "X"], `${client.spec.container}: its connect and close`);
      }
      const serverTypes = events.filter((e) => e.pid === server.actor.pid).map((e) => e.type);
      assertEquals(serverTypes.filter((t) => t === "A").length, ports.length);
      const hostEvents = events.filter((e) => e.pid === host.pid);
      assertEquals(hostEvents.map((e) => e.type).sort(), ["C", "X"]);
      assert(hostEvents.every((e) => e.node === "node-1" && e.namespace === ""));
    });
  },
});

/**
 * One connection of `actor` to itself over loopback, closed by the client
 * side first: its C, A, X, X exactly as they should be reported.
 */
async function selfConnection(actor: Actor): Promise<ExpectedEvent[]> {
  const listener = await actor.do("listen 127.0.0.1");
  const connected = await actor.do(`connect 127.0.0.1 ${listener.port}`);
  assertEquals(connected.error, null);
  const accepted = await actor.do(`accept ${listener.sock}`);
  await actor.do(`close ${connected.sock}`);
  await actor.do(`close ${accepted.sock}`);
  await actor.do(`close ${listener.sock}`);
  const { pid, comm } = actor;
  const port = listener.port as number;
  const client = connected.sport as number;
  const at = { pid, comm, ipversion: 4 as const, saddr: "127.0.0.1", daddr: "127.0.0.1" };
  return [
    { ...at, type: "C", sport: client, dport: port },
    { ...at, type: "A", sport: port, dport: client },
    { ...at, type: "X", sport: client, dport: port },
    { ...at, type: "X", sport: port, dport: client },
  ];
}

/** The ports of expected events, to collect them. */
function portsOf(expected: ExpectedEvent[]): number[] {
  return [...new Set(expected.flatMap((e) => [e.sport, e.dport]))];
}

/**
 * What node mode does with each event read: the container filter decides
 * about its namespace, the enricher names it, the pod filter checks it.
 * Returns the events shown.
 */
function show(
  events: TcpEvent[],
  keeper: MountNamespaceFilter,
  enricher: ContainerEnricher,
  filter: KubernetesFilter,
): TraceEvent[] {
  const shown: TraceEvent[] = [];
  for (const event of events) {
    keeper.decide(event);
    const enriched = enricher.enrich(event);
    if (matchesFilter(enriched, filter)) shown.push(enriched);
  }
  return shown;
}

/** The mount namespace seq the events of `pid` carry (one value). */
function seqOf(events: TcpEvent[], pid: number): number {
  const seqs = [...new Set(events.filter((e) => e.pid === pid).map((e) => e.mntnsSeq))];
  assertEquals(seqs.length, 1, `one mount namespace seq for pid ${pid}: ${seqs}`);
  assert(seqs[0]! > 0, `pid ${pid}: the kernel gives the seq`);
  return seqs[0]!;
}

Deno.test({
  name: "containers: -n, -p, -c and --host filter in user space, then in the kernel",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    const webUid = crypto.randomUUID();
    const nginx = await node.start({
      namespace: "shop",
      pod: "web-0",
      podUid: webUid,
      container: "nginx",
      comm: "tg-ct-nginx",
      driver: "cgroupfs",
      qos: "burstable",
      runtime: "containerd",
      hierarchies: v1OrV2("v1"),
    });
    const envoy = await node.start({
      namespace: "shop",
      pod: "web-0",
      podUid: webUid,
      container: "envoy",
      comm: "tg-ct-envoy",
      driver: "cgroupfs",
      qos: "burstable",
      runtime: "containerd",
      hierarchies: v1OrV2("v1"),
    });
    const other = await node.start({
      namespace: "other",
      pod: "web-0",
      container: "nginx",
      comm: "tg-ct-other",
      driver: "systemd",
      qos: "besteffort",
      runtime: "crio",
      hierarchies: ["v2"],
    });
    await using host = await hostActor("tg-ct-host");
    const expected: Expectations = new Map(node.containers.map((c) => [c.actor.pid, c.expected]));
    const resolver = resolverFor(node);
    resolver.refresh();
    const enricher = new ContainerEnricher(resolver, "node-1");
    const actors = [nginx.actor, envoy.actor, other.actor, host];

    const cases: [KubernetesFilter, Actor[]][] = [
      [{ namespace: "shop" }, [nginx.actor, envoy.actor]],
      [{ pod: "web-0" }, [nginx.actor, envoy.actor, other.actor]],
      [{ container: "nginx" }, [nginx.actor, other.actor]],
      [{ namespace: "shop", pod: "web-0", container: "envoy" }, [envoy.actor]],
      [{ namespace: "other", host: true }, [other.actor, host]],
      [{ namespace: "nowhere" }, []],
    ];
    for (const [filter, through] of cases) {
      const label = JSON.stringify(filter);
      using keeper = new MountNamespaceFilter(resolver, containerSelection(filter)!);
      await withTracer({ filterMountNamespaces: true }, async (tracer) => {
        keeper.attach(tracer);
        // No namespace is decided yet: the kernel lets every one through,
        // user space decides from these first events and shows its own.
        let wanted: ExpectedEvent[] = [];
        let made: ExpectedEvent[] = [];
        for (const actor of actors) {
          const events = await selfConnection(actor);
          made = made.concat(events);
          if (through.includes(actor)) wanted = wanted.concat(events);
        }
        const first = await collectEvents(tracer, portsOf(made), made.length);
        assertSameEvents(first, made);
        const shown = show(first, keeper, enricher, filter);
        assertSameEvents(shown, wanted);
        assertNamed(shown, expected);
        for (const actor of actors) {
          assertEquals(
            tracer.mountNamespaceDecision(seqOf(first, actor.pid)),
            through.includes(actor),
            `${label}: the kernel's decision about ${actor.comm}`,
          );
        }

        // Decided: the kernel drops the others' events.
        wanted = [];
        made = [];
        for (const actor of actors) {
          const events = await selfConnection(actor);
          made = made.concat(events);
          if (through.includes(actor)) wanted = wanted.concat(events);
        }
        const later = await collectEvents(tracer, portsOf(made), wanted.length);
        assertSameEvents(later, wanted);
        assertSameEvents(show(later, keeper, enricher, filter), wanted);
      });
    }
  },
});

const LATE: Omit<ContainerSpec, "comm"> = {
  namespace: "late",
  pod: "job-28d5f",
  container: "worker",
  driver: "systemd",
  qos: "besteffort",
  runtime: "containerd",
  hierarchies: ["v2"],
};
const ELSEWHERE: Omit<ContainerSpec, "comm"> = {
  namespace: "elsewhere",
  pod: "cron-5b7f4",
  container: "agent",
  driver: "cgroupfs",
  qos: "burstable",
  runtime: "crio",
  hierarchies: v1OrV2("v1", "v2"),
};

/** Starts a container and makes a connection as soon as it runs. */
async function startAndConnect(node: FakeNode, spec: ContainerSpec) {
  const container = await node.start(spec);
  return { container, events: await selfConnection(container.actor) };
}

Deno.test({
  name: "containers: a container started while tracing is seen from its first connection",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    using resolver = resolverFor(node);
    resolver.refresh();
    const enricher = new ContainerEnricher(resolver, "node-1");
    // No rescan from here on: the containers are known from their events only.
    const filters: KubernetesFilter[] = [
      { namespace: "late" },
      { pod: "job-28d5f" },
      { container: "worker" },
    ];
    for (const [i, filter] of filters.entries()) {
      const label = JSON.stringify(filter);
      using keeper = new MountNamespaceFilter(resolver, containerSelection(filter)!);
      await withTracer({ filterMountNamespaces: true }, async (tracer) => {
        keeper.attach(tracer);
        // A container of another pod starts at the same time.
        const [late, elsewhere] = await Promise.all([
          startAndConnect(node, { ...LATE, comm: `tg-ct-late${i}` }),
          startAndConnect(node, { ...ELSEWHERE, comm: `tg-ct-else${i}` }),
        ]);
        const made = [...late.events, ...elsewhere.events];
        const first = await collectEvents(tracer, portsOf(made), made.length);
        const shown = show(first, keeper, enricher, filter);
        assertSameEvents(shown, late.events);
        assertNamed(shown, new Map([[late.container.actor.pid, late.container.expected]]));
        const lateSeq = seqOf(first, late.container.actor.pid);
        const elsewhereSeq = seqOf(first, elsewhere.container.actor.pid);
        assertEquals(tracer.mountNamespaceDecision(lateSeq), true, label);
        assertEquals(tracer.mountNamespaceDecision(elsewhereSeq), false, label);

        // The other pod's later events no longer leave the kernel.
        const again = [
          ...await selfConnection(late.container.actor),
          ...await selfConnection(elsewhere.container.actor),
        ];
        const later = await collectEvents(tracer, portsOf(again), 4);
        assertSameEvents(later, again.slice(0, 4));
        await late.container.actor.stop();
        await elsewhere.container.actor.stop();
      });
    }
  },
});

Deno.test({
  name: "containers: a new container in a reused mount namespace inode gets a decision of its own",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    using resolver = resolverFor(node);
    resolver.refresh();
    const enricher = new ContainerEnricher(resolver, "node-1");
    const filter = { namespace: "late" };
    using keeper = new MountNamespaceFilter(resolver, containerSelection(filter)!);
    await withTracer({ filterMountNamespaces: true }, async (tracer) => {
      keeper.attach(tracer);
      // A denied container connects, is decided, and ends.
      const denied = await startAndConnect(node, { ...ELSEWHERE, comm: "tg-ct-old" });
      const old = await collectEvents(tracer, portsOf(denied.events), 4);
      assertSameEvents(show(old, keeper, enricher, filter), []);
      const oldSeq = seqOf(old, denied.container.actor.pid);
      assertEquals(tracer.mountNamespaceDecision(oldSeq), false);
      await denied.container.actor.stop();

      // A selected one in a namespace with the same inode number connects
      // at once: its namespace is a new one to the kernel.
      const selected = await node.startReusing(denied.container.mntns, {
        ...LATE,
        comm: "tg-ct-new",
      });
      const events = await selfConnection(selected.actor);
      const reported = await collectEvents(tracer, portsOf(events), 4);
      const shown = show(reported, keeper, enricher, filter);
      assertSameEvents(shown, events);
      assertNamed(shown, new Map([[selected.actor.pid, selected.expected]]));
      const newSeq = seqOf(reported, selected.actor.pid);
      assert(newSeq !== oldSeq);
      assertEquals(tracer.mountNamespaceDecision(newSeq), true);
      await selected.actor.stop();

      // And the other way round: a denied container after a selected one.
      const next = await node.startReusing(selected.mntns, { ...ELSEWHERE, comm: "tg-ct-next" });
      const first = await selfConnection(next.actor);
      const firstReported = await collectEvents(tracer, portsOf(first), 4);
      assertSameEvents(show(firstReported, keeper, enricher, filter), []);
      assertEquals(tracer.mountNamespaceDecision(seqOf(firstReported, next.actor.pid)), false);
      const second = await selfConnection(next.actor);
      assertSameEvents(await collectEvents(tracer, portsOf(second), 0), []);
    });
  },
});

Deno.test({
  name: "containers: a container that moves into a cgroup named like another pod's keeps its name",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    const victim = await node.start({
      namespace: "bank",
      pod: "vault-0",
      container: "vault",
      comm: "tg-ct-vault",
      driver: "cgroupfs",
      qos: "besteffort",
      runtime: "containerd",
      hierarchies: ["v2"],
    });
    const intruder = await node.start({
      namespace: "shop",
      pod: "web-0",
      container: "nginx",
      comm: "tg-ct-intruder",
      driver: "systemd",
      qos: "burstable",
      runtime: "containerd",
      hierarchies: ["v2"],
    });
    const filter = { namespace: "bank" };
    await withTracer({ filterMountNamespaces: true }, async (tracer) => {
      // Below its own cgroup, the victim's path as kubelet would make it.
      const nested = await node.nest(
        intruder,
        `/kubepods/besteffort/pod${victim.podUid}/${victim.containerId}`,
      );
      // A resolver that meets the intruder there.
      using resolver = resolverFor(node);
      using keeper = new MountNamespaceFilter(resolver, containerSelection(filter)!);
      keeper.attach(tracer);
      const enricher = new ContainerEnricher(resolver, "node-1");
      const intruderEvents = await selfConnection(intruder.actor);
      const victimEvents = await selfConnection(victim.actor);
      const made = [...intruderEvents, ...victimEvents];
      const raw = await collectEvents(tracer, portsOf(made), made.length);
      assertSameEvents(raw, made);
      const intruders = raw.filter((e) => e.pid === intruder.actor.pid);
      assert(
        intruders.every((e) => e.cgroupId === nested),
        "the events come from the nested cgroup",
      );
      const shown = show(raw, keeper, enricher, filter);
      assertSameEvents(shown, victimEvents);
      assertNamed(
        raw as TraceEvent[],
        new Map(node.containers.map((c) => [c.actor.pid, c.expected])),
      );
      assertEquals(tracer.mountNamespaceDecision(seqOf(raw, intruder.actor.pid)), false);

      // Gone, it is named by its cgroup id: the same.
      await intruder.actor.stop();
      const fresh = new ContainerEnricher(resolverFor(node), "node-1");
      const named = intruders.map((e) => fresh.enrich({ ...e }));
      assertNamed(named, new Map([[intruder.actor.pid, intruder.expected]]));
    });
  },
});

Deno.test({
  name: "containers: a container that exits right after closing still has its events named",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    // In v1 only, its cgroup id is the root's: only the grace period names it.
    const v1Only = HAS_V1
      ? await node.start({
        namespace: "batch",
        pod: "backup-28d5f-x7k2p",
        container: "rsync",
        comm: "tg-ct-exit1",
        driver: "cgroupfs",
        qos: "besteffort",
        runtime: "containerd",
        hierarchies: ["v1"],
      })
      : undefined;
    const v2 = await node.start({
      namespace: "batch",
      pod: "report-28d5f-q9z4m",
      container: "curl",
      comm: "tg-ct-exit2",
      driver: "systemd",
      qos: "burstable",
      runtime: "crio",
      hierarchies: ["v2"],
    });
    const exiting = v1Only ? [v1Only, v2] : [v2];
    await using server = await hostActor("tg-ct-server");
    using resolver = resolverFor(node, { graceMs: 5000 });
    resolver.refresh();
    resolver.start(100);

    await withTracer({}, async (tracer) => {
      const ports = [];
      for (const c of exiting) {
        ports.push(await connection(c.actor, server));
        await c.actor.stop();
      }
      // Several rescans after the exits, within the grace period.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const raw = await collectEvents(tracer, ports, 4 * ports.length);
      const events = raw.map((e) => new ContainerEnricher(resolver).enrich({ ...e }));
      assertNamed(events, new Map(exiting.map((c) => [c.actor.pid, c.expected])));
      for (const c of exiting) {
        const types = events.filter((e) => e.pid === c.actor.pid).map((e) => e.type).sort();
        assertEquals(types, ["C", "X"]);
      }

      // A resolver that never saw them: the v2 container by its cgroup id
      // (the directory is still there), the v1 one not at all.
      const fresh = new ContainerEnricher(resolverFor(node));
      const late = raw.map((e: TcpEvent) => fresh.enrich({ ...e }));
      const expected: Expectations = new Map([[v2.actor.pid, v2.expected]]);
      if (v1Only) expected.set(v1Only.actor.pid, HOST_FIELDS);
      assertNamed(late, expected);
    });
  },
});
