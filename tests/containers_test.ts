/**
 * Container enrichment and container filters in the real kernel: test
 * actors in mount namespaces of their own, in cgroups named as kubelet and
 * the runtimes name them (both drivers, cgroup v1 and v2), with kubelet's
 * log links under a temporary host root. A real TcpTracer reports their
 * connections; the resolver and the enricher name them; the in-kernel
 * filter lets through only the containers a filter selects.
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
import { collectEvents } from "./helpers/collect.ts";
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

/** Each actor connects to itself: C, A, X, X, all its own. Returns the ports. */
async function selfConnections(actors: Actor[]): Promise<Map<number, number>> {
  const ports = new Map<number, number>();
  for (const actor of actors) ports.set(await connection(actor, actor), actor.pid);
  return ports;
}

Deno.test({
  name: "containers: -n, -p, -c and --host filter in the kernel",
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

    const cases: [KubernetesFilter, Actor[]][] = [
      [{ namespace: "shop" }, [nginx.actor, envoy.actor]],
      [{ pod: "web-0" }, [nginx.actor, envoy.actor, other.actor]],
      [{ container: "nginx" }, [nginx.actor, other.actor]],
      [{ namespace: "shop", pod: "web-0", container: "envoy" }, [envoy.actor]],
      [{ namespace: "other", host: true }, [other.actor, host]],
      [{ namespace: "nowhere" }, []],
    ];
    for (const [filter, through] of cases) {
      using keeper = new MountNamespaceFilter(resolver, containerSelection(filter)!);
      await withTracer({ mountNamespaces: [...keeper.allowed] }, async (tracer) => {
        keeper.attach(tracer);
        const ports = await selfConnections([nginx.actor, envoy.actor, other.actor, host]);
        const events = (await collectEvents(tracer, [...ports.keys()], 4 * through.length))
          .map((e) => enricher.enrich(e));
        const label = JSON.stringify(filter);
        assertEquals(
          [...new Set(events.map((e) => e.pid))].sort(),
          through.map((a) => a.pid).sort(),
          `${label}: whose events arrive`,
        );
        assertEquals(events.length, 4 * through.length, `${label}: all four events of each`);
        assertNamed(events, expected);
        assert(events.every((e) => matchesFilter(e, filter)), `${label}: user-space check agrees`);
      });
    }
  },
});

Deno.test({
  name: "containers: a container started while tracing is let through at the next rescan",
  ignore,
  async fn() {
    await using node = FakeNode.create();
    using resolver = resolverFor(node, { graceMs: 300 });
    resolver.refresh();
    using keeper = new MountNamespaceFilter(resolver, containerSelection({ namespace: "late" })!);
    await withTracer({ mountNamespaces: [...keeper.allowed] }, async (tracer) => {
      keeper.attach(tracer);
      resolver.start(100);
      const late = await node.start({
        namespace: "late",
        pod: "job-28d5f",
        container: "worker",
        comm: "tg-ct-late",
        driver: "systemd",
        qos: "besteffort",
        runtime: "containerd",
        hierarchies: ["v2"],
      });
      await using host = await hostActor("tg-ct-host");
      await waitFor(() => keeper.allowed.has(late.mntns), "the rescan lets the container in");
      const ports = await selfConnections([late.actor, host]);
      const enricher = new ContainerEnricher(resolver, "node-1");
      const events = (await collectEvents(tracer, [...ports.keys()], 4)).map((e) =>
        enricher.enrich(e)
      );
      assertEquals(events.map((e) => e.pid), [
        late.actor.pid,
        late.actor.pid,
        late.actor.pid,
        late.actor.pid,
      ]);
      assertNamed(events, new Map([[late.actor.pid, late.expected]]));

      await late.actor.stop();
      await waitFor(() => !keeper.allowed.has(late.mntns), "gone after the grace period");
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

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
