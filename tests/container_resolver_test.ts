/**
 * The container resolver on a fake host root (no privileges): naming from
 * /proc, cgroups and kubelet's files, the retry limit for unknown
 * namespaces, the grace period of exited containers, reused namespace ids,
 * processes not yet moved into their container's cgroup, and cgroup ids of
 * processes that are gone.
 */

import {
  type ContainerInfo,
  ContainerResolver,
  NO_CONTAINER,
} from "../k8s/node/container_resolver.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { FakeHost, type FakeKubeletContainer } from "./helpers/fake_host.ts";

const HOST_MNTNS = 4026531841;

function web(n: number): FakeKubeletContainer {
  const hex = n.toString(16);
  return {
    namespace: "shop",
    pod: `web-${n}`,
    podUid: `0f3c8a56-2d1e-4b5a-9c7d-${hex.padStart(12, "0")}`,
    container: "nginx",
    containerId: hex.repeat(64).slice(0, 64),
  };
}

/** cgroup v2 path of a container, systemd driver, containerd. */
function systemdPath(c: FakeKubeletContainer): string {
  const uid = c.podUid.replaceAll("-", "_");
  return `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid}.slice/` +
    `cri-containerd-${c.containerId}.scope`;
}

function info(c: FakeKubeletContainer): ContainerInfo {
  return {
    containerId: c.containerId,
    podUid: c.podUid,
    namespace: c.namespace,
    pod: c.pod,
    container: c.container,
  };
}

/** A fake host with pid 1 in the host's namespace, and a settable clock. */
function setup(host: FakeHost, options: { graceMs?: number } = {}) {
  host.process(1, HOST_MNTNS, "0::/init.scope\n");
  const clock = { now: 1000 };
  const resolver = new ContainerResolver({
    hostRoot: host.root,
    now: () => clock.now,
    retryIntervalMs: 1000,
    graceMs: options.graceMs ?? 5000,
  });
  return { resolver, clock };
}

Deno.test("resolver: host processes, and the host's namespace", async () => {
  await using host = FakeHost.create();
  const { resolver } = setup(host);
  assertEquals(resolver.hostMountNamespace, HOST_MNTNS);
  assertEquals(resolver.lookup(HOST_MNTNS, 1), NO_CONTAINER);
  assertEquals(resolver.lookup(0), NO_CONTAINER, "unknown namespace (0)");
  // Another namespace, but no container (a systemd service with PrivateTmp).
  host.process(20, 300, "0::/system.slice/chronyd.service\n");
  assertEquals(resolver.lookup(300, 20), NO_CONTAINER);
});

Deno.test("resolver: a container by the event's pid, and by a scan of /proc", async () => {
  await using host = FakeHost.create();
  const { resolver } = setup(host);
  const a = web(1);
  const b = web(2);
  host.logLink(a);
  host.logLink(b);
  host.process(10, 201, `0::${systemdPath(a)}\n`);
  host.process(11, 202, `0::${systemdPath(b)}\n`);
  assertEquals(resolver.lookup(201, 10), info(a));
  // No pid (or a wrong one): found by scanning.
  assertEquals(resolver.lookup(202, 999), info(b));
  assertEquals(
    [...resolver.namespaces()].sort((x, y) => x[0] - y[0]),
    [[201, info(a)], [202, info(b)], [HOST_MNTNS, NO_CONTAINER]].sort((x, y) =>
      (x[0] as number) - (y[0] as number)
    ),
  );
});

Deno.test("resolver: an unknown namespace is looked up at most once per interval", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = setup(host);
  const a = web(3);
  host.logLink(a);
  assertEquals(resolver.lookup(203), NO_CONTAINER);
  host.process(12, 203, `0::${systemdPath(a)}\n`);
  clock.now += 999;
  assertEquals(resolver.lookup(203, 12), NO_CONTAINER, "within the interval: cached miss");
  clock.now += 1;
  assertEquals(resolver.lookup(203, 12), info(a));
});

Deno.test("resolver: a container named once kubelet's link appears", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = setup(host);
  const a = web(4);
  host.podDir(a);
  host.process(13, 204, `0::${systemdPath(a)}\n`);
  // The pod directory comes first: pod and namespace, no container name yet.
  assertEquals(resolver.lookup(204, 13), { ...info(a), container: "" });
  host.logLink(a);
  assertEquals(resolver.lookup(204, 13).container, "", "not before the retry interval");
  clock.now += 1000;
  assertEquals(resolver.lookup(204, 13), info(a));
  // A refresh names it too, without an event.
  const b = web(5);
  host.podDir(b);
  host.process(14, 205, `0::${systemdPath(b)}\n`);
  resolver.refresh();
  assertEquals(resolver.lookup(205).container, "");
  host.logLink(b);
  resolver.refresh();
  assertEquals(resolver.lookup(205), info(b));
});

Deno.test("resolver: an exited container keeps its names for the grace period", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = setup(host, { graceMs: 5000 });
  const a = web(6);
  host.logLink(a);
  host.process(15, 206, `0::${systemdPath(a)}\n`);
  resolver.refresh();
  host.exit(15);
  clock.now += 1000;
  resolver.refresh();
  assertEquals(resolver.lookup(206, 15), info(a), "its last events are still named");
  clock.now += 5000;
  resolver.refresh();
  assert(![...resolver.namespaces()].some(([mntns]) => mntns === 206), "forgotten");
  assertEquals(resolver.lookup(206, 15), NO_CONTAINER);
});

Deno.test("resolver: a reused namespace id gets the new container", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = setup(host);
  const a = web(7);
  const b = web(8);
  host.logLink(a);
  host.logLink(b);
  host.process(16, 207, `0::${systemdPath(a)}\n`);
  resolver.refresh();
  assertEquals(resolver.lookup(207), info(a));
  host.exit(16);
  host.process(17, 207, `0::${systemdPath(b)}\n`);
  clock.now += 500;
  resolver.refresh();
  assertEquals(resolver.lookup(207), info(b));
});

Deno.test("resolver: a process moved into its container's cgroup after the scan", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = setup(host);
  const a = web(9);
  host.logLink(a);
  // The runtime creates the namespace, then moves the process.
  host.process(18, 209, "0::/system.slice/containerd.service\n");
  resolver.refresh();
  assertEquals(resolver.lookup(209), NO_CONTAINER);
  Deno.writeTextFileSync(`${host.root}/proc/18/cgroup`, `0::${systemdPath(a)}\n`);
  clock.now += 500;
  resolver.refresh();
  assertEquals(resolver.lookup(209), info(a));
});

Deno.test("resolver: a process that is gone is named by its cgroup id", async () => {
  await using host = FakeHost.create();
  const { resolver } = setup(host);
  const a = web(10);
  host.logLink(a);
  const cgroupId = host.cgroup(systemdPath(a));
  // Never seen alive: no /proc entry, only the event's cgroup id.
  assertEquals(resolver.lookup(210, 19, cgroupId), info(a));
});

Deno.test("resolver: v1 cgroupfs layout, guaranteed pod, CRI-O", async () => {
  await using host = FakeHost.create();
  const { resolver } = setup(host);
  const a = { ...web(11), podUid: "b53dfa9e2dc9b890f7fadb2770857b03" };
  host.logLink(a);
  host.process(
    21,
    211,
    `5:pids:/kubepods/podb53dfa9e2dc9b890f7fadb2770857b03/crio-${a.containerId}\n` +
      `1:name=systemd:/kubepods/podb53dfa9e2dc9b890f7fadb2770857b03/crio-${a.containerId}\n` +
      "0::/\n",
  );
  assertEquals(resolver.lookup(211, 21), info(a));
});

Deno.test("resolver: refresh listeners", async () => {
  await using host = FakeHost.create();
  const { resolver } = setup(host);
  let calls = 0;
  const remove = resolver.onRefresh(() => calls++);
  resolver.refresh();
  remove();
  resolver.refresh();
  assertEquals(calls, 1);
});
