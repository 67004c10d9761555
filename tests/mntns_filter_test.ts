/**
 * The keeper of the kernel's mount namespace filter, on a fake host root
 * (no privileges): which namespaces each filter lets through, and what it
 * pushes as containers come and go.
 */

import { ContainerResolver } from "../k8s/node/container_resolver.ts";
import { containerSelection, type KubernetesFilter } from "../k8s/pod_filter.ts";
import { MountNamespaceFilter, type MountNamespaceGate } from "../k8s/node/mntns_filter.ts";
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
  allowMountNamespace(mntns: number): void {
    this.calls.push(`+${mntns}`);
  }
  disallowMountNamespace(mntns: number): void {
    this.calls.push(`-${mntns}`);
  }
}

/** Host pid 1, a private-namespace host service, and four containers (mntns 101..104). */
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

function sorted(set: Iterable<number>): number[] {
  return [...set].sort((a, b) => a - b);
}

const FILTERS: [string, KubernetesFilter, number[]][] = [
  ["-n shop", { namespace: "shop" }, [101, 102, 103]],
  ["-p web-0 (every namespace)", { pod: "web-0" }, [101, 102, 104]],
  ["-n shop -p web-0", { namespace: "shop", pod: "web-0" }, [101, 102]],
  ["-c nginx", { container: "nginx" }, [101, 104]],
  ["-n shop -p web-0 -c envoy", { namespace: "shop", pod: "web-0", container: "envoy" }, [102]],
  ["-n nowhere", { namespace: "nowhere" }, []],
  ["-n other --host", { namespace: "other", host: true }, [104, PRIVATE_MNTNS, HOST_MNTNS]],
];

for (const [name, filter, expected] of FILTERS) {
  Deno.test(`mntns filter: ${name}`, async () => {
    await using host = FakeHost.create();
    const { resolver } = node(host);
    using keeper = new MountNamespaceFilter(resolver, containerSelection(filter)!);
    resolver.refresh();
    assertEquals(sorted(keeper.allowed), sorted(expected));
  });
}

Deno.test("mntns filter: containers that start and exit are pushed to the gate", async () => {
  await using host = FakeHost.create();
  const { resolver, clock } = node(host);
  resolver.refresh();
  using keeper = new MountNamespaceFilter(resolver, containerSelection({ namespace: "shop" })!);
  const gate = new RecordingGate();
  keeper.attach(gate);
  assertEquals(gate.calls.sort(), ["+101", "+102", "+103"]);
  gate.calls.length = 0;

  const late = container(5, "shop", "worker-0", "job");
  host.logLink(late);
  host.process(20, 105, cgroupfs(late));
  host.exit(12); // db-0
  clock.now += 500;
  resolver.refresh();
  assertEquals(gate.calls, ["+105"], "a new container; the exited one is in its grace period");
  gate.calls.length = 0;

  clock.now += 6000;
  resolver.refresh();
  assertEquals(gate.calls, ["-103"]);
  assertEquals(sorted(keeper.allowed), [101, 102, 105]);
});

Deno.test("mntns filter: labels need a hook (cluster mode)", async () => {
  await using host = FakeHost.create();
  const { resolver } = node(host);
  resolver.refresh();
  const filter = { labels: { app: "web" } };
  using without = new MountNamespaceFilter(resolver, containerSelection(filter)!);
  assertEquals(sorted(without.allowed), []);
  using withHook = new MountNamespaceFilter(
    resolver,
    containerSelection(
      filter,
      (info): Record<string, string> => info.pod === "web-0" ? { app: "web" } : {},
    )!,
  );
  assertEquals(sorted(withHook.allowed), [101, 102, 104]);
});

Deno.test("mntns filter: a gate that fails is retried at the next update", async () => {
  await using host = FakeHost.create();
  const { resolver } = node(host);
  resolver.refresh();
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
    allowMountNamespace(mntns) {
      if (fail) throw new Error("map full");
      gate.allowMountNamespace(mntns);
    },
    disallowMountNamespace: (mntns) => gate.disallowMountNamespace(mntns),
  });
  assertEquals(errors.length, 1);
  assertEquals(sorted(keeper.allowed), []);
  fail = false;
  assertEquals(keeper.update(), { allowed: [103], disallowed: [] });
  assertEquals(gate.calls, ["+103"]);
});

Deno.test("mntns filter: only for container filters", () => {
  assertEquals(containerSelection({ host: true }), undefined);
  assertEquals(containerSelection({ container: "x" }) !== undefined, true);
  assertEquals(containerSelection({}), undefined);
});
