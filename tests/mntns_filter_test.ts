/**
 * The decisions of the kernel's container filter, on a fake host root (no
 * privileges): taken from the first event of each mount namespace (by its
 * seq), not while its container is not known for good, fresh for a new
 * namespace that took an old one's inode number, taken again when the
 * answer changes, and given to the kernel again when it lost them.
 */

import { ContainerResolver } from "../k8s/node/container_resolver.ts";
import { containerSelection, type KubernetesFilter } from "../k8s/pod_filter.ts";
import {
  MountNamespaceFilter,
  type MountNamespaceGate,
  type NamespaceOfEvent,
} from "../k8s/node/mntns_filter.ts";
import { assertEquals } from "./helpers/assert.ts";
import { FakeHost, type FakeKubeletContainer } from "./helpers/fake_host.ts";

const HOST_MNTNS = 4026531841;
const PRIVATE_MNTNS = 4026532000; // a host service with its own mount namespace

function container(n: number, namespace: string, pod: string, name: string) {
  const hex = n.toString(16);
  return {
    namespace,
    pod,
    podUid: `0f3c8a56-2d1e-4b5a-9c7d-${hex.padStart(12, "0")}`,
    container: name,
    containerId: hex.repeat(64).slice(0, 64),
  } satisfies FakeKubeletContainer;
}

const SHOP_WEB = container(1, "shop", "web-0", "nginx");
const SHOP_WEB_SIDECAR = container(2, "shop", "web-0", "envoy");
const SHOP_DB = container(3, "shop", "db-0", "postgres");
const OTHER = container(4, "other", "web-0", "nginx");

/** cgroup v1 path, cgroupfs driver. */
function cgroupfs(c: FakeKubeletContainer): string {
  return `4:pids:/kubepods/besteffort/pod${c.podUid}/${c.containerId}\n0::/\n`;
}

class RecordingGate implements MountNamespaceGate {
  readonly calls: string[] = [];
  decideMountNamespace(seq: number, allowed: boolean): void {
    this.calls.push(`${allowed ? "+" : "-"}${seq}`);
  }
}

/**
 * Host pid 1, a private-namespace host service (pid 2), and four
 * containers: pids 10..13 in mount namespaces 101..104.
 */
function node(host: FakeHost) {
  host.process(1, HOST_MNTNS, "0::/init.scope\n");
  host.process(2, PRIVATE_MNTNS, "0::/system.slice/chronyd.service\n");
  [SHOP_WEB, SHOP_WEB_SIDECAR, SHOP_DB, OTHER].forEach((c, i) => {
    host.logLink(c);
    host.process(10 + i, 101 + i, cgroupfs(c));
  });
  const clock = { now: 0 };
  const resolver = new ContainerResolver({ hostRoot: host.root, now: () => clock.now });
  return { resolver, clock };
}

/** An event of process `pid` in mount namespace `mntns`, whose seq is `seq`. */
function event(pid: number, mntns: number, seq: number, cgroupId = 0): NamespaceOfEvent {
  return { pid, mntns, mntnsSeq: seq, cgroupId };
}

/** One event of each process of {@link node}; seq = 1000 + pid. */
const NODE_EVENTS = [
  event(1, HOST_MNTNS, 1001),
  event(2, PRIVATE_MNTNS, 1002),
  event(10, 101, 1010),
  event(11, 102, 1011),
  event(12, 103, 1012),
  event(13, 104, 1013),
];

function keeperWithGate(
  resolver: ContainerResolver,
  filter: KubernetesFilter,
  clock?: { now: number },
) {
  const keeper = new MountNamespaceFilter(resolver, containerSelection(filter)!, {
    now: clock ? () => clock.now : undefined,
  });
  const gate = new RecordingGate();
  keeper.attach(gate);
  return { keeper, gate };
}

const FILTERS: [string, KubernetesFilter, number[]][] = [
  ["-n shop", { namespace: "shop" }, [1010, 1011, 1012]],
  ["-p web-0 (every namespace)", { pod: "web-0" }, [1010, 1011, 1013]],
  ["-n shop -p web-0", { namespace: "shop", pod: "web-0" }, [1010, 1011]],
  ["-c nginx", { container: "nginx" }, [1010, 1013]],
  ["-n shop -p web-0 -c envoy", { namespace: "shop", pod: "web-0", container: "envoy" }, [1011]],
  ["-n nowhere", { namespace: "nowhere" }, []],
  ["-n other --host", { namespace: "other", host: true }, [1001, 1002, 1013]],
];

for (const [name, filter, allowed] of FILTERS) {
  Deno.test(`mntns filter: ${name}, decided from each namespace's first event`, async () => {
    await using host = FakeHost.create();
    const { resolver } = node(host);
    const { keeper, gate } = keeperWithGate(resolver, filter);
    using _ = keeper;
    for (const e of NODE_EVENTS) keeper.decide(e);
    const expected = NODE_EVENTS.map((e) =>
      `${allowed.includes(e.mntnsSeq!) ? "+" : "-"}${e.mntnsSeq}`
    );
    assertEquals(gate.calls, expected);
    // Later events of decided namespaces change nothing.
    for (const e of NODE_EVENTS) keeper.decide(e);
    assertEquals(gate.calls, expected);
    for (const e of NODE_EVENTS) {
      assertEquals(keeper.decision(e.mntnsSeq!), allowed.includes(e.mntnsSeq!));
    }
  });
}

Deno.test("mntns filter: decisions taken before a gate is attached are given to it", async () => {
  await using host = FakeHost.create();
  const { resolver } = node(host);
  using keeper = new MountNamespaceFilter(resolver, containerSelection({ namespace: "shop" })!);
  keeper.decide(event(10, 101, 7));
  keeper.decide(event(13, 104, 8));
  const gate = new RecordingGate();
  keeper.attach(gate);
  assertEquals(gate.calls, ["+7", "-8"]);
});

Deno.test("mntns filter: no decision without a seq, or while the container is not known for good", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = node(host);
  const { keeper, gate } = keeperWithGate(resolver, { namespace: "shop" }, clock);
  using _ = keeper;
  keeper.decide(event(10, 101, 0));
  assertEquals(gate.calls, [], "seq 0: the kernel did not know the namespace");

  // Kubelet made the pod's log directory, not yet the container's link.
  const late = container(5, "shop", "worker-0", "job");
  host.podDir(late);
  host.process(20, 105, cgroupfs(late));
  keeper.decide(event(20, 105, 9));
  assertEquals(gate.calls, [], "undecided: its events keep coming");
  assertEquals(keeper.decision(9), undefined);
  host.logLink(late);
  clock.now += 100;
  keeper.decide(event(20, 105, 9));
  assertEquals(gate.calls, [], "not looked into again before the retry interval");
  clock.now += 150;
  keeper.decide(event(20, 105, 9));
  assertEquals(gate.calls, ["+9"]);

  // Its process gone and no cgroup to go by: nothing is known for good.
  keeper.decide(event(99, 106, 10));
  assertEquals(gate.calls, ["+9"]);
});

Deno.test("mntns filter: a process gone is decided by its cgroup id", async () => {
  await using host = FakeHost.create();
  const { resolver } = node(host);
  const { keeper, gate } = keeperWithGate(resolver, { pod: "job-0" });
  using _ = keeper;
  const job = container(6, "batch", "job-0", "curl");
  host.logLink(job);
  const cgroupId = host.cgroup(
    `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${
      job.podUid.replaceAll("-", "_")
    }.slice/cri-containerd-${job.containerId}.scope`,
  );
  keeper.decide(event(30, 107, 11, cgroupId));
  assertEquals(gate.calls, ["+11"]);
});

Deno.test("mntns filter: a namespace that took an old one's inode number gets a decision of its own", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = node(host);
  const { keeper, gate } = keeperWithGate(resolver, { namespace: "shop" }, clock);
  using _ = keeper;
  keeper.decide(event(13, 104, 12)); // other/web-0 in namespace 104
  assertEquals(gate.calls, ["-12"]);
  resolver.refresh(); // the resolver knows 104 as other/web-0's

  // It exits; a container of shop starts in a new namespace with the same
  // inode number, and connects before any rescan.
  host.exit(13);
  const job = container(7, "shop", "job-0", "migrate");
  host.logLink(job);
  host.process(31, 104, cgroupfs(job));
  keeper.decide(event(31, 104, 13));
  assertEquals(gate.calls, ["-12", "+13"]);
  assertEquals(resolver.lookup(104, 31).pod, "job-0", "and its events are named as its own");
});

Deno.test("mntns filter: a process moved into a pod's cgroup after its first event is decided again", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = node(host);
  const { keeper, gate } = keeperWithGate(resolver, { namespace: "shop" }, clock);
  using _ = keeper;
  const job = container(8, "shop", "job-1", "migrate");
  host.logLink(job);
  // The runtime made the namespace; the process is not in the pod yet.
  host.process(32, 108, "0::/system.slice/containerd.service\n");
  keeper.decide(event(32, 108, 14));
  assertEquals(gate.calls, ["-14"]);
  Deno.writeTextFileSync(`${host.root}/proc/32/cgroup`, cgroupfs(job));
  clock.now += 500;
  resolver.refresh();
  assertEquals(gate.calls, ["-14", "+14"]);
});

Deno.test("mntns filter: labels that change are followed at every rescan", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = node(host);
  let webLabels: Record<string, string> = {};
  using keeper = new MountNamespaceFilter(
    resolver,
    containerSelection(
      { labels: { app: "web" } },
      (info): Record<string, string> => info.pod === "web-0" ? webLabels : {},
    )!,
    { now: () => clock.now },
  );
  const gate = new RecordingGate();
  keeper.attach(gate);
  keeper.decide(event(10, 101, 15));
  keeper.decide(event(12, 103, 16));
  assertEquals(gate.calls, ["-15", "-16"], "labels not known yet");
  webLabels = { app: "web" };
  resolver.refresh();
  assertEquals(gate.calls, ["-15", "-16", "+15"]);
  webLabels = {};
  resolver.refresh();
  assertEquals(gate.calls, ["-15", "-16", "+15", "-15"]);
});

Deno.test("mntns filter: a denied namespace whose events keep coming is denied again", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = node(host);
  const { keeper, gate } = keeperWithGate(resolver, { namespace: "shop" }, clock);
  using _ = keeper;
  keeper.decide(event(13, 104, 17));
  clock.now += 100;
  keeper.decide(event(13, 104, 17)); // queued before the decision
  assertEquals(gate.calls, ["-17"]);
  clock.now += 1000;
  keeper.decide(event(13, 104, 17)); // the kernel's LRU map dropped it
  assertEquals(gate.calls, ["-17", "-17"]);
});

Deno.test("mntns filter: a gate that fails is tried again", async () => {
  await using host = FakeHost.create();
  const { resolver } = node(host);
  const errors: unknown[] = [];
  using keeper = new MountNamespaceFilter(
    resolver,
    containerSelection({ container: "postgres" })!,
    {
      onError: (error) => errors.push(error),
    },
  );
  let fail = true;
  const gate = new RecordingGate();
  keeper.attach({
    decideMountNamespace(seq, allowed) {
      if (fail) throw new Error("map update failed");
      gate.decideMountNamespace(seq, allowed);
    },
  });
  keeper.decide(event(12, 103, 18));
  assertEquals(errors.length, 1);
  assertEquals(gate.calls, []);
  fail = false;
  resolver.refresh();
  assertEquals(gate.calls, ["+18"]);
});

Deno.test("mntns filter: decisions of namespaces gone are forgotten", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = node(host);
  const { keeper, gate } = keeperWithGate(resolver, { namespace: "shop" }, clock);
  using _ = keeper;
  keeper.decide(event(12, 103, 19));
  resolver.refresh();
  host.exit(12);
  clock.now += 1000;
  resolver.refresh();
  assertEquals(keeper.decision(19), true, "within the resolver's grace period");
  clock.now += 5000;
  resolver.refresh();
  assertEquals(keeper.decision(19), undefined);
  assertEquals(gate.calls, ["+19"]);
});

Deno.test("mntns filter: only for container filters", () => {
  assertEquals(containerSelection({ host: true }), undefined);
  assertEquals(containerSelection({ container: "x" }) !== undefined, true);
  assertEquals(containerSelection({}), undefined);
});
