/**
 * Tests of the fake Kubernetes API server (tests/kube_apiserver), over
 * real HTTPS with @kubernetes/client-node as the client where it can be,
 * and raw fetch / WebSocket where the test needs to see the wire.
 *
 * Pods really run processes, in private mount namespaces: these tests need
 * root and are skipped (with the reason printed) otherwise.
 *
 * @module
 */

// deno-lint-ignore-file no-explicit-any

import * as k8s from "@kubernetes/client-node";
// @deno-types="@types/ws"
import WebSocket from "ws";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { PassThrough, Writable } from "node:stream";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import {
  canUseMountNamespaces,
  type Credentials,
  type FakeApiServer,
  startFakeApiServer,
} from "./kube_apiserver/mod.ts";
import { cgroupHierarchies } from "./kube_apiserver/kubelet_files.ts";
import { isAlive } from "./kube_apiserver/sandbox.ts";

const FILE = "tests/kube_apiserver_test.ts";

function skipReason(): string | undefined {
  if (Deno.build.os !== "linux") return "not Linux";
  if (!canUseMountNamespaces()) {
    return "needs root with unshare/nsenter/setsid/setpriv/mount (pods run in mount namespaces)";
  }
  try {
    new Deno.Command("openssl", { args: ["version"], stdout: "null" }).outputSync();
  } catch {
    return "openssl not installed";
  }
  return undefined;
}

const SKIP = skipReason();
if (SKIP) console.warn(`SKIPPED (${FILE}): ${SKIP}`);

/** Deno.test for a test that needs the fake's sandboxes (root). */
function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: SKIP !== undefined, fn });
}

const NODES = [{ name: "node-a" }, { name: "node-b" }];

function clients(kubeconfig: string): { kc: k8s.KubeConfig; core: k8s.CoreV1Api } {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(kubeconfig);
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api) };
}

async function adminClients(api: FakeApiServer) {
  return clients(await api.kubeconfig());
}

/** The parsed Status of a client-node ApiException. */
async function apiError(promise: Promise<unknown>): Promise<{ code: number; status: any }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { code?: number; body?: unknown };
    assert(typeof e.code === "number", `not an ApiException: ${error}`);
    const body = typeof e.body === "string" ? JSON.parse(e.body) : e.body;
    return { code: e.code, status: body };
  }
  throw new Error("expected the request to fail");
}

function podBody(name: string, node: string | undefined, extra: Record<string, any> = {}): any {
  const { spec, ...rest } = extra;
  return {
    metadata: { name, labels: { app: "gadget" } },
    spec: {
      ...(node ? { nodeName: node } : {}),
      hostPID: true,
      hostNetwork: true,
      terminationGracePeriodSeconds: 2,
      containers: [{ name: "c", image: "busybox:1.36" }],
      ...spec,
    },
    ...rest,
  };
}

const isRunning = (pod: any) => pod.status?.phase === "Running";

async function runningPod(
  api: FakeApiServer,
  core: k8s.CoreV1Api,
  name: string,
  node = "node-a",
  namespace = "default",
): Promise<void> {
  await core.createNamespacedPod({ namespace, body: podBody(name, node) });
  await api.waitForPod(namespace, name, isRunning);
}

/** Runs a command with client-node's Exec; resolves with output and status. */
function clientExec(
  kc: k8s.KubeConfig,
  pod: string,
  command: string[],
  input?: Uint8Array,
  namespace = "default",
): Promise<{ stdout: Uint8Array; stderr: Uint8Array; status: any }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new Writable({
    write(chunk, _enc, cb) {
      out.push(Buffer.from(chunk));
      cb();
    },
  });
  const stderr = new Writable({
    write(chunk, _enc, cb) {
      err.push(Buffer.from(chunk));
      cb();
    },
  });
  const stdin = input ? new PassThrough() : null;
  return new Promise((resolve, reject) => {
    new k8s.Exec(kc).exec(namespace, pod, "c", command, stdout, stderr, stdin, false, (status) => {
      // The status arrives before the socket closes; let the streams settle.
      setTimeout(
        () => resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), status }),
        20,
      );
    }).then(() => {
      if (stdin && input) {
        for (let i = 0; i < input.length; i += 256 * 1024) {
          stdin.write(Buffer.from(input.subarray(i, i + 256 * 1024)));
        }
        stdin.end();
      }
    }, reject);
  });
}

/** A raw WebSocket to the server (to see protocols, codes and bodies). */
function openSocket(
  api: FakeApiServer,
  path: string,
  options: { protocols?: string[]; credentials?: Credentials } = {},
): Promise<WebSocket | { status: number; body: string }> {
  const creds = options.credentials ?? api.admin;
  const ws = new WebSocket(
    `wss://127.0.0.1:${api.port}${path}`,
    options.protocols ?? ["v5.channel.k8s.io", "v4.channel.k8s.io"],
    { ca: api.ca, cert: creds.cert, key: creds.key },
  );
  return new Promise((resolve, reject) => {
    ws.on("open", () => resolve(ws));
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on("error", (error) => reject(error));
  });
}

function execPath(pod: string, command: string[], params = "stdin=true&stdout=true&stderr=true") {
  const cmd = command.map((c) => `command=${encodeURIComponent(c)}`).join("&");
  return `/api/v1/namespaces/default/pods/${pod}/exec?${cmd}&${params}&tty=false&container=c`;
}

interface RawExec {
  stdout: Buffer;
  stderr: Buffer;
  status: any;
  closeCode: number;
  firstFrames: number[][];
}

/** Collects a raw exec session until the socket closes. */
function collect(ws: WebSocket): Promise<RawExec> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const firstFrames: number[][] = [];
  let status: any;
  return new Promise((resolve) => {
    ws.on("message", (data: Buffer) => {
      if (firstFrames.length < 3) firstFrames.push([...data.subarray(0, 2)]);
      const channel = data[0];
      const body = data.subarray(1);
      if (channel === 1) out.push(body);
      else if (channel === 2) err.push(body);
      else if (channel === 3) {
        const text = body.toString();
        try {
          status = JSON.parse(text);
        } catch {
          status = text;
        }
      }
    });
    ws.on(
      "close",
      (code) =>
        resolve({
          stdout: Buffer.concat(out),
          stderr: Buffer.concat(err),
          status,
          closeCode: code,
          firstFrames,
        }),
    );
  });
}

/** Sends stdin with flow control (waits while the socket's buffer is full). */
async function sendStdin(ws: WebSocket, data: Iterable<Uint8Array>): Promise<void> {
  for (const chunk of data) {
    const frame = Buffer.alloc(chunk.length + 1);
    frame[0] = 0;
    frame.set(chunk, 1);
    if (ws.bufferedAmount > 1 << 20) {
      await new Promise<void>((resolve, reject) =>
        ws.send(frame, (e) => (e ? reject(e) : resolve()))
      );
    } else ws.send(frame);
  }
}

async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

// ---------------------------------------------------------------------------

test("discovery, version and authentication (certificate, token, none)", async () => {
  await using api = await startFakeApiServer();
  const { kc } = await adminClients(api);
  const version = await kc.makeApiClient(k8s.VersionApi).getCode();
  assertEquals(version.major, "1");
  assertMatch(version.gitVersion, /^v1\.\d+\.\d+$/);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const resources = await core.getAPIResources();
  assertEquals(resources.groupVersion, "v1");
  assert(resources.resources.some((r) => r.name === "pods/exec"));

  const anonymous = Deno.createHttpClient({ caCerts: [api.ca] });
  try {
    const r = await fetch(`${api.url}/api/v1/pods`, { client: anonymous });
    assertEquals(r.status, 401);
    assertEquals(await r.json(), {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: "Unauthorized",
      reason: "Unauthorized",
      code: 401,
    });
    const bad = await fetch(`${api.url}/api`, {
      client: anonymous,
      headers: { Authorization: "Bearer nope" },
    });
    assertEquals(bad.status, 401);
    await bad.body?.cancel();
    const good = await fetch(`${api.url}/api`, {
      client: anonymous,
      headers: { Authorization: `Bearer ${api.admin.token}` },
    });
    assertEquals((await good.json()).versions, ["v1"]);
  } finally {
    anonymous.close();
  }

  // Token kubeconfig, other user: the requests are recorded under that user.
  const bob = clients(await api.kubeconfig({ user: "bob", groups: ["devs"], auth: "token" }));
  await bob.core.listNamespace();
  assertEquals(api.countRequests({ user: "bob", resource: "namespaces", verb: "list" }), 1);
  assertEquals(api.countRequests({ code: 401 }), 2);

  // writeKubeconfig writes a file the client loads as-is.
  const path = `${api.dir}/kubeconfig`;
  await api.writeKubeconfig(path, { namespace: "kube-system", context: "ctx" });
  const fromFile = new k8s.KubeConfig();
  fromFile.loadFromFile(path);
  assertEquals(fromFile.getCurrentContext(), "ctx");
  assertEquals(fromFile.getContextObject("ctx")?.namespace, "kube-system");
  const nsList = await fromFile.makeApiClient(k8s.CoreV1Api).listNamespace();
  assertEquals(nsList.kind, "NamespaceList");
  assertMatch(nsList.metadata?.resourceVersion ?? "", /^\d+$/);
});

test("nodes and namespaces: list, get, label selectors", async () => {
  await using api = await startFakeApiServer({
    nodes: [
      { name: "node-a", labels: { pool: "x" } },
      { name: "node-b", taints: [{ key: "dedicated", value: "gadget", effect: "NoSchedule" }] },
    ],
    namespaces: [{ name: "locked", labels: { "pod-security.kubernetes.io/enforce": "baseline" } }],
  });
  const { core } = await adminClients(api);
  const nodes = await core.listNode();
  assertEquals(nodes.kind, "NodeList");
  assertEquals(nodes.items.map((n) => n.metadata?.name), ["node-a", "node-b"]);
  const pool = await core.listNode({ labelSelector: "pool=x" });
  assertEquals(pool.items.map((n) => n.metadata?.name), ["node-a"]);
  const notPool = await core.listNode({ labelSelector: "!pool" });
  assertEquals(notPool.items.map((n) => n.metadata?.name), ["node-b"]);
  const b = await core.readNode({ name: "node-b" });
  assertEquals(b.spec?.taints?.[0].key, "dedicated");
  assert(b.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
  assertEquals(b.status?.addresses?.[0].type, "InternalIP");
  const ns = await core.readNamespace({ name: "locked" });
  assertEquals(ns.metadata?.labels?.["pod-security.kubernetes.io/enforce"], "baseline");
  const missing = await apiError(core.readNode({ name: "nope" }));
  assertEquals(missing.code, 404);
  assertEquals(missing.status.message, 'nodes "nope" not found');
  const bad = await apiError(core.listNode({ labelSelector: "a in (b" }));
  assertEquals(bad.code, 400);
});

test("pods: create, get, list, 404, 409, 422, generateName", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { core } = await adminClients(api);
  const created = await core.createNamespacedPod({
    namespace: "default",
    body: podBody("p1", "node-a"),
  });
  assertEquals(created.kind, "Pod");
  assertEquals(created.apiVersion, "v1");
  assertEquals(created.status?.phase, "Pending");
  assertMatch(created.metadata?.uid ?? "", /^[0-9a-f-]{36}$/);
  assertMatch(created.metadata?.resourceVersion ?? "", /^\d+$/);
  assert(created.metadata?.creationTimestamp instanceof Date);
  assertEquals(created.spec?.restartPolicy, "Always");

  const running = await api.waitForPod("default", "p1", isRunning);
  const status = running.status;
  assertEquals(status.containerStatuses[0].ready, true);
  assert(status.containerStatuses[0].state.running.startedAt);
  assertEquals(status.hostIP, "127.0.1.1");
  assertEquals(status.podIP, status.hostIP); // hostNetwork
  assertEquals(status.podIPs, [{ ip: status.hostIP }]);

  const got = await core.readNamespacedPod({ namespace: "default", name: "p1" });
  assertEquals(got.status?.phase, "Running");
  const list = await core.listNamespacedPod({ namespace: "default" });
  assertEquals(list.kind, "PodList");
  assertEquals(list.items.length, 1);
  assertMatch(list.metadata?.resourceVersion ?? "", /^\d+$/);
  const all = await core.listPodForAllNamespaces({ fieldSelector: "spec.nodeName=node-a" });
  assertEquals(all.items.map((p) => p.metadata?.name), ["p1"]);
  const none = await core.listPodForAllNamespaces({ fieldSelector: "spec.nodeName=node-b" });
  assertEquals(none.items.length, 0);
  const phase = await core.listPodForAllNamespaces({ fieldSelector: "status.phase=Running" });
  assertEquals(phase.items.length, 1);

  const dup = await apiError(
    core.createNamespacedPod({ namespace: "default", body: podBody("p1", "node-a") }),
  );
  assertEquals(dup.code, 409);
  assertEquals(dup.status.reason, "AlreadyExists");
  assertEquals(dup.status.message, 'pods "p1" already exists');
  assertEquals(dup.status.details, { name: "p1", kind: "pods" });

  const missing = await apiError(core.readNamespacedPod({ namespace: "default", name: "x" }));
  assertEquals(missing.code, 404);
  assertEquals(missing.status, {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: 'pods "x" not found',
    reason: "NotFound",
    details: { name: "x", kind: "pods" },
    code: 404,
  });

  const invalid = await apiError(core.createNamespacedPod({
    namespace: "default",
    body: { metadata: { name: "bad" }, spec: { containers: [] } } as any,
  }));
  assertEquals(invalid.code, 422);
  assertEquals(invalid.status.reason, "Invalid");
  assertEquals(invalid.status.message, 'Pod "bad" is invalid: spec.containers: Required value');
  assertEquals(invalid.status.details.causes, [
    { reason: "FieldValueRequired", message: "Required value", field: "spec.containers" },
  ]);

  const noNs = await apiError(
    core.createNamespacedPod({ namespace: "nope", body: podBody("p", "node-a") }),
  );
  assertEquals(noNs.code, 404);
  assertEquals(noNs.status.message, 'namespaces "nope" not found');

  const generated = await core.createNamespacedPod({
    namespace: "default",
    body: { ...podBody("", "node-b"), metadata: { generateName: "gadget-" } },
  });
  assertMatch(generated.metadata?.name ?? "", /^gadget-[a-z0-9]{5}$/);
  await api.waitForPod("default", generated.metadata!.name!, isRunning);
  assertEquals(api.pods("default").length, 2);
});

test("pods on an unknown or NotReady node stay Pending", async () => {
  await using api = await startFakeApiServer({ nodes: [{ name: "node-a", ready: false }] });
  const { core } = await adminClients(api);
  await core.createNamespacedPod({ namespace: "default", body: podBody("lost", "ghost") });
  await core.createNamespacedPod({ namespace: "default", body: podBody("waiting", "node-a") });
  await new Promise((r) => setTimeout(r, 200));
  assertEquals(api.pod("default", "lost")?.status.phase, "Pending");
  assertEquals(api.pod("default", "waiting")?.status.phase, "Pending");
  api.setNodeReady("node-a", true);
  await api.waitForPod("default", "waiting", isRunning);
  // A deleted pod on a missing node goes away through the pod GC.
  await core.deleteNamespacedPod({ namespace: "default", name: "lost" });
  assert(api.pod("default", "lost")?.metadata.deletionTimestamp);
  await api.waitForPodDeleted("default", "lost");
});

test("watch: ADDED/MODIFIED/DELETED with selectors, resume and 410 Expired", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { kc, core } = await adminClients(api);
  const events: { type: string; name: string; phase?: string; deleting: boolean }[] = [];
  let doneError: unknown = "not done";
  const watch = new k8s.Watch(kc);
  const controller = await watch.watch(
    "/api/v1/pods",
    { fieldSelector: "spec.nodeName=node-a", labelSelector: "app=gadget" },
    (type, obj: any) =>
      events.push({
        type,
        name: obj.metadata.name,
        phase: obj.status?.phase,
        deleting: !!obj.metadata.deletionTimestamp,
      }),
    (error) => (doneError = error),
  );
  await runningPod(api, core, "w1", "node-a");
  await runningPod(api, core, "other", "node-b");
  const start = api.pod("default", "w1")!.metadata.resourceVersion!;
  await core.deleteNamespacedPod({ namespace: "default", name: "w1" });
  await api.waitForPodDeleted("default", "w1");
  await eventually(() => events.at(-1)?.type === "DELETED", "DELETED event");
  controller.abort();
  await eventually(() => doneError !== "not done", "watch end");

  assert(events.every((e) => e.name === "w1"), JSON.stringify(events));
  assertEquals(events[0], { type: "ADDED", name: "w1", phase: "Pending", deleting: false });
  assert(events.some((e) => e.type === "MODIFIED" && e.phase === "Running"));
  const deleting = events.findIndex((e) => e.deleting);
  assert(deleting > 0 && events[deleting].type === "MODIFIED", "MODIFIED with deletionTimestamp");
  assertEquals(events.at(-1)?.type, "DELETED");
  assert(["Failed", "Succeeded"].includes(events.at(-1)!.phase!), "terminal phase before removal");

  // Resume from a resourceVersion: only later changes, as JSON lines.
  const client = Deno.createHttpClient({
    caCerts: [api.ca],
    cert: api.admin.cert,
    key: api.admin.key,
  });
  try {
    const r = await fetch(
      `${api.url}/api/v1/namespaces/default/pods?watch=1&resourceVersion=${start}&timeoutSeconds=1&fieldSelector=metadata.name%3Dw1`,
      { client },
    );
    assertEquals(r.status, 200);
    const lines = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines[0].type, "MODIFIED");
    assertEquals(lines.at(-1).type, "DELETED");
    assert(lines.every((l) => Number(l.object.metadata.resourceVersion) > Number(start)));

    api.compactHistory();
    const gone = await fetch(
      `${api.url}/api/v1/namespaces/default/pods?watch=true&resourceVersion=${start}`,
      { client },
    );
    const [event] = (await gone.text()).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(event.type, "ERROR");
    assertEquals(event.object.code, 410);
    assertEquals(event.object.reason, "Expired");
    assertMatch(event.object.message, /^too old resource version: \d+ \(\d+\)$/);
  } finally {
    client.close();
  }
});

test("delete collection by label and graceful deletion", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { core } = await adminClients(api);
  await runningPod(api, core, "a1", "node-a");
  await runningPod(api, core, "a2", "node-b");
  await core.createNamespacedPod({
    namespace: "default",
    body: { ...podBody("keep", "node-a"), metadata: { name: "keep", labels: { app: "other" } } },
  });
  const result = await core.deleteCollectionNamespacedPod({
    namespace: "default",
    labelSelector: "app=gadget",
  });
  assertEquals((result as any).kind, "PodList");
  await api.waitForPodDeleted("default", "a1");
  await api.waitForPodDeleted("default", "a2");
  assertEquals(api.pods("default").map((p) => p.metadata.name), ["keep"]);
  // gracePeriodSeconds=0 removes the object at once.
  await api.waitForPod("default", "keep", isRunning);
  await core.deleteNamespacedPod({ namespace: "default", name: "keep", gracePeriodSeconds: 0 });
  assertEquals(api.pod("default", "keep"), undefined);
});

test("services: list and watch with clusterIP", async () => {
  await using api = await startFakeApiServer();
  api.addService({
    namespace: "default",
    name: "web",
    clusterIP: "127.2.9.9",
    ports: [{ port: 80 }],
  });
  const { kc, core } = await adminClients(api);
  const list = await core.listServiceForAllNamespaces();
  assertEquals(list.kind, "ServiceList");
  const web = list.items.find((s) => s.metadata?.name === "web");
  assertEquals(web?.spec?.clusterIP, "127.2.9.9");
  assertEquals(web?.spec?.clusterIPs, ["127.2.9.9"]);
  const seen: string[] = [];
  const controller = await new k8s.Watch(kc).watch(
    "/api/v1/services",
    { resourceVersion: list.metadata?.resourceVersion },
    (type, obj: any) => seen.push(`${type} ${obj.metadata.name} ${obj.spec?.clusterIP}`),
    () => {},
  );
  api.addService({ namespace: "default", name: "db", clusterIP: "127.2.9.10" });
  api.removeService("default", "db");
  await eventually(() => seen.length === 2, "service events");
  controller.abort();
  assertEquals(seen, ["ADDED db 127.2.9.10", "DELETED db 127.2.9.10"]);
});

test("RBAC denials: the real 403 messages", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const admin = await adminClients(api);
  await runningPod(api, admin.core, "target", "node-a");
  api.deny({ user: "alice", verb: "create", resource: "pods", namespace: "default" });
  api.deny({ user: "alice", verb: "list", resource: "nodes" });
  api.deny({ user: "alice", verb: "create", resource: "pods/exec" });
  const alice = clients(await api.kubeconfig({ user: "alice" }));

  const create = await apiError(
    alice.core.createNamespacedPod({ namespace: "default", body: podBody("x", "node-a") }),
  );
  assertEquals(create.code, 403);
  assertEquals(create.status, {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message:
      'pods is forbidden: User "alice" cannot create resource "pods" in API group "" in the namespace "default"',
    reason: "Forbidden",
    details: { kind: "pods" },
    code: 403,
  });
  const nodes = await apiError(alice.core.listNode());
  assertEquals(
    nodes.status.message,
    'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope',
  );
  // Reading is still allowed.
  assertEquals(
    (await alice.core.readNamespacedPod({ namespace: "default", name: "target" })).metadata?.name,
    "target",
  );

  // WebSocket exec needs create on pods/exec too: refused before the upgrade.
  const aliceCreds = await api.credentials("alice");
  const refused = await openSocket(api, execPath("target", ["true"]), { credentials: aliceCreds });
  assert(!(refused instanceof WebSocket));
  assertEquals(refused.status, 403);
  const status = JSON.parse(refused.body);
  assertEquals(
    status.message,
    'pods "target" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "default"',
  );
  assertEquals(status.details, { name: "target", kind: "pods" });

  api.restrict("carol", [{ verb: ["get", "list"], resource: "pods" }]);
  const carol = clients(await api.kubeconfig({ user: "carol" }));
  await carol.core.listNamespacedPod({ namespace: "default" });
  const get = await apiError(carol.core.readNamespace({ name: "default" }));
  assertEquals(
    get.status.message,
    'namespaces "default" is forbidden: User "carol" cannot get resource "namespaces" in API group "" in the namespace "default"',
  );
  const exec = await openSocket(api, execPath("target", ["true"]), {
    credentials: await api.credentials("carol"),
  });
  assert(!(exec instanceof WebSocket));
  assertMatch(JSON.parse(exec.body).message, /cannot get resource "pods\/exec"/);
});

test("PodSecurity admission: baseline and restricted refusals", async () => {
  await using api = await startFakeApiServer({
    nodes: NODES,
    namespaces: [
      { name: "base", labels: { "pod-security.kubernetes.io/enforce": "baseline" } },
      { name: "strict", labels: { "pod-security.kubernetes.io/enforce": "restricted" } },
      { name: "open", labels: { "pod-security.kubernetes.io/enforce": "privileged" } },
    ],
  });
  const { core } = await adminClients(api);
  const gadget = (name: string) =>
    podBody(name, "node-a", {
      spec: {
        hostPID: true,
        hostNetwork: true,
        containers: [{ name: "c", image: "busybox", securityContext: { privileged: true } }],
        volumes: [{ name: "host", hostPath: { path: "/" } }],
      },
    });
  const base = await apiError(core.createNamespacedPod({ namespace: "base", body: gadget("g") }));
  assertEquals(base.code, 403);
  assertEquals(base.status.reason, "Forbidden");
  assertEquals(
    base.status.message,
    'pods "g" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume "host"), privileged (container "c" must not set securityContext.privileged=true)',
  );
  assertEquals(base.status.details, { name: "g", kind: "pods" });

  const strict = await apiError(
    core.createNamespacedPod({
      namespace: "strict",
      body: podBody("s", "node-a", { spec: { hostPID: false, hostNetwork: false } }),
    }),
  );
  assertEquals(
    strict.status.message,
    'pods "s" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
  );
  const ok = await core.createNamespacedPod({ namespace: "open", body: gadget("g") });
  assertEquals(ok.metadata?.name, "g");
});

test("exec: stdin upload with v5 half-close, hash, exit codes", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { kc, core } = await adminClients(api);
  await runningPod(api, core, "p", "node-a");
  const data = new Uint8Array(4 << 20);
  for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  const upload = await clientExec(kc, "p", ["sh", "-c", "cat > /tmp/x; sha256sum /tmp/x"], data);
  assertEquals(upload.status, { metadata: {}, status: "Success" });
  assertEquals(new TextDecoder().decode(upload.stdout), `${sha256(data)}  /tmp/x\n`);

  const fail = await clientExec(kc, "p", ["sh", "-c", "echo oops >&2; exit 3"]);
  assertEquals(new TextDecoder().decode(fail.stderr), "oops\n");
  assertEquals(fail.status, {
    metadata: {},
    status: "Failure",
    message: "command terminated with non-zero exit code: command terminated with exit code 3",
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: "3" }] },
  });

  // v4 (no translator): the kubelet's own wording; the first frame announces stdout.
  const ws = await openSocket(
    api,
    execPath("p", ["sh", "-c", "exit 7"], "stdout=true&stderr=true"),
    {
      protocols: ["v4.channel.k8s.io"],
    },
  );
  assert(ws instanceof WebSocket);
  assertEquals(ws.protocol, "v4.channel.k8s.io");
  const v4 = await collect(ws);
  assertEquals(v4.firstFrames[0], [1]);
  assertEquals(
    v4.status.message,
    "command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7",
  );
  assertEquals(v4.status.details.causes[0].message, "7");
  assertEquals(v4.closeCode, 1000);

  // The client's first offered protocol that the server supports wins.
  const v5 = await openSocket(api, execPath("p", ["true"], "stdout=true"), {
    protocols: ["v5.channel.k8s.io", "v4.channel.k8s.io"],
  });
  assert(v5 instanceof WebSocket);
  assertEquals(v5.protocol, "v5.channel.k8s.io");
  assertEquals((await collect(v5)).status, { metadata: {}, status: "Success" });

  // A command that does not exist.
  const missing = await clientExec(kc, "p", ["no-such-command"]);
  assertEquals(missing.status.reason, "InternalError");
  assertMatch(missing.status.message, /executable file not found in \$PATH/);

  // Errors before the upgrade are Status responses.
  const noPod = await openSocket(api, execPath("nope", ["true"]));
  assert(!(noPod instanceof WebSocket));
  assertEquals(noPod.status, 404);
  assertEquals(JSON.parse(noPod.body).message, 'pods "nope" not found');
  const badContainer = await openSocket(
    api,
    `/api/v1/namespaces/default/pods/p/exec?command=true&stdout=true&container=zz`,
  );
  assert(!(badContainer instanceof WebSocket));
  assertEquals(badContainer.status, 400);
  assertEquals(JSON.parse(badContainer.body).message, "container zz is not valid for pod p");
});

test("exec: 100 MB upload is streamed with flow control", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  assertEquals(api.tlsFrontend, "node");
  const { core } = await adminClients(api);
  await runningPod(api, core, "big", "node-a");
  // The reader starts late: without push-back the server would take in
  // (and hold) the whole upload meanwhile.
  const ws = await openSocket(
    api,
    execPath("big", ["sh", "-c", "sleep 1; echo go >&2; sha256sum"]),
  );
  assert(ws instanceof WebSocket);
  let handed = 0;
  let flushedAtGo = -1;
  ws.on("message", (d: Buffer) => {
    if (d[0] === 2 && d.subarray(1).toString() === "go\n") flushedAtGo = handed - ws.bufferedAmount;
  });
  const result = collect(ws);
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < chunk.length; i += 65536) {
    crypto.getRandomValues(chunk.subarray(i, i + 65536));
  }
  const hash = createHash("sha256");
  await sendStdin(
    ws,
    (function* () {
      for (let i = 0; i < 100; i++) {
        chunk[0] = i;
        hash.update(chunk);
        handed += chunk.length;
        yield chunk;
      }
    })(),
  );
  ws.send(Uint8Array.of(255, 0)); // v5: close stdin
  const done = await result;
  assertEquals(done.status, { metadata: {}, status: "Success" });
  assertEquals(done.stdout.toString(), `${hash.digest("hex")}  -\n`);
  assert(flushedAtGo >= 0, "the reader never started");
  assert(
    flushedAtGo < 32 << 20,
    `${flushedAtGo >> 20} MiB left the client before the command read anything`,
  );
});

test("exec: pods on two nodes have separate /tmp; pending pods refuse exec", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { kc, core } = await adminClients(api);
  await runningPod(api, core, "pa", "node-a");
  await runningPod(api, core, "pb", "node-b");
  const write = await clientExec(kc, "pa", ["sh", "-c", "echo a > /tmp/mark; cat /tmp/mark"]);
  assertEquals(new TextDecoder().decode(write.stdout), "a\n");
  const other = await clientExec(kc, "pb", ["sh", "-c", "ls /tmp; test ! -e /tmp/mark"]);
  assertEquals(other.status.status, "Success");
  assertEquals(new TextDecoder().decode(other.stdout), "");
  const again = await clientExec(kc, "pa", ["cat", "/tmp/mark"]);
  assertEquals(new TextDecoder().decode(again.stdout), "a\n");
  let hostSees = true;
  try {
    Deno.statSync("/tmp/mark");
  } catch {
    hostSees = false;
  }
  assert(!hostSees, "the pod's /tmp leaked to the host");
  // Host PID namespace: the exec'd shell sees the host's processes.
  const pid = await clientExec(kc, "pa", ["sh", "-c", `test -d /proc/${Deno.pid} && echo host`]);
  assertEquals(new TextDecoder().decode(pid.stdout), "host\n");
  // Environment from the downward API.
  await core.createNamespacedPod({
    namespace: "default",
    body: podBody("envy", "node-b", {
      spec: {
        containers: [{
          name: "c",
          image: "busybox",
          env: [
            { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
            { name: "GREETING", value: "hi" },
          ],
        }],
      },
    }),
  });
  await api.waitForPod("default", "envy", isRunning);
  const env = await clientExec(kc, "envy", ["sh", "-c", "echo $NODE $GREETING"]);
  assertEquals(new TextDecoder().decode(env.stdout), "node-b hi\n");

  // A container that is not running: v4 gets the kubelet's refusal, v5 a status.
  api.failImagePull("nope:1");
  await core.createNamespacedPod({
    namespace: "default",
    body: podBody("stuck", "node-a", { spec: { containers: [{ name: "c", image: "nope:1" }] } }),
  });
  const v4 = await openSocket(api, execPath("stuck", ["true"]), {
    protocols: ["v4.channel.k8s.io"],
  });
  assert(!(v4 instanceof WebSocket));
  assertEquals(v4.status, 500);
  assertEquals(v4.body, 'container not found ("c")');
  const v5 = await clientExec(kc, "stuck", ["true"]);
  assertEquals(v5.status.reason, "InternalError");
  assertEquals(
    v5.status.message,
    'Internal error occurred: unable to upgrade connection: container not found ("c")',
  );
  await core.createNamespacedPod({ namespace: "default", body: podBody("lost", "ghost") });
  const lost = await openSocket(api, execPath("lost", ["true"]));
  assert(!(lost instanceof WebSocket));
  assertEquals(lost.status, 404);
  assertEquals(JSON.parse(lost.body).message, 'nodes "ghost" not found');
  await core.createNamespacedPod({ namespace: "default", body: podBody("nohost", undefined) });
  const nohost = await openSocket(api, execPath("nohost", ["true"]));
  assert(!(nohost instanceof WebSocket));
  assertEquals(JSON.parse(nohost.body).message, "pod nohost does not have a host assigned");
});

test("activeDeadlineSeconds fails the pod and kills its processes", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { kc, core } = await adminClients(api);
  await core.createNamespacedPod({
    namespace: "default",
    body: podBody("short", "node-a", { spec: { activeDeadlineSeconds: 1 } }),
  });
  await api.waitForPod("default", "short", isRunning);
  const started = await clientExec(kc, "short", [
    "sh",
    "-c",
    "sleep 1000 >/dev/null 2>&1 & echo $!",
  ]);
  const sleeper = Number(new TextDecoder().decode(started.stdout));
  assert(isAlive(sleeper));
  const failed = await api.waitForPod(
    "default",
    "short",
    (p) => p.status?.phase === "Failed",
    5000,
  );
  assertEquals(failed.status.reason, "DeadlineExceeded");
  assertEquals(
    failed.status.message,
    "Pod was active on the node longer than the specified deadline",
  );
  assert("terminated" in failed.status.containerStatuses[0].state);
  await eventually(() => !isAlive(sleeper), "the pod's process to die");
  assertEquals(api.podProcesses("default", "short"), []);
  const refused = await clientExec(kc, "short", ["true"]);
  assertEquals(refused.status.reason, "InternalError");
});

test("delete kills the pod's processes; disconnect kills the exec", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { kc, core } = await adminClients(api);
  await runningPod(api, core, "victim", "node-a");
  // Disconnecting kills the exec'd process (killExecOnDisconnect).
  const ws = await openSocket(api, execPath("victim", ["sh", "-c", "echo $$; exec sleep 1000"]));
  assert(ws instanceof WebSocket);
  const pid = await new Promise<number>((resolve) => {
    ws.on("message", (d: Buffer) => {
      if (d[0] === 1 && d.length > 1) resolve(Number(d.subarray(1).toString()));
    });
  });
  assert(isAlive(pid));
  ws.close();
  await eventually(() => !isAlive(pid), "exec'd process to die on disconnect");

  // Background processes of the pod die with it.
  const bg = await clientExec(kc, "victim", [
    "sh",
    "-c",
    "setsid sleep 1000 >/dev/null 2>&1 < /dev/null & echo $!",
  ]);
  const sleeper = Number(new TextDecoder().decode(bg.stdout));
  assert(isAlive(sleeper));
  const processes = api.podProcesses("default", "victim");
  assert(processes.includes(sleeper), `${sleeper} not in ${processes}`);
  await core.deleteNamespacedPod({ namespace: "default", name: "victim", gracePeriodSeconds: 1 });
  await api.waitForPodDeleted("default", "victim");
  for (const p of processes) assert(!isAlive(p), `process ${p} survived the pod`);
});

test("image pull failures show ErrImagePull then ImagePullBackOff", async () => {
  await using api = await startFakeApiServer({ nodes: NODES, imagePullBackoffMs: 100 });
  const undo = api.failImagePull("ghcr.io/x/missing:1");
  const { core } = await adminClients(api);
  await core.createNamespacedPod({
    namespace: "default",
    body: podBody("img", "node-a", {
      spec: { containers: [{ name: "c", image: "ghcr.io/x/missing:1" }] },
    }),
  });
  const waiting = (reason: string) => (p: any) =>
    p.status?.containerStatuses?.[0]?.state?.waiting?.reason === reason;
  const pulling = await api.waitForPod("default", "img", waiting("ErrImagePull"));
  assertEquals(pulling.status.phase, "Pending");
  assertMatch(pulling.status.containerStatuses[0].state.waiting.message, /ghcr\.io\/x\/missing:1/);
  await api.waitForPod("default", "img", waiting("ImagePullBackOff"));
  const events = await core.listNamespacedEvent({
    namespace: "default",
    fieldSelector: "involvedObject.name=img",
  });
  assert(events.items.some((e) => e.reason === "Failed" && e.type === "Warning"));
  undo();
  await api.waitForPod("default", "img", isRunning);
});

test("fault injection: failed requests and dropped exec streams", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { core } = await adminClients(api);
  await runningPod(api, core, "p", "node-a");
  api.failRequests({ verb: "list", resource: "pods", code: 429, retryAfterSeconds: 2 });
  const limited = await apiError(core.listNamespacedPod({ namespace: "default" }));
  assertEquals(limited.code, 429);
  assertEquals(limited.status.reason, "TooManyRequests");
  assertEquals(limited.status.details, { retryAfterSeconds: 2 });
  await core.listNamespacedPod({ namespace: "default" });

  api.dropExecStreams(1, { afterOutputBytes: 1 });
  const ws = await openSocket(api, execPath("p", ["sh", "-c", "echo first; exec sleep 1000"]));
  assert(ws instanceof WebSocket);
  const dropped = await collect(ws);
  assertEquals(dropped.closeCode, 1006); // no close frame
  assertEquals(dropped.status, undefined);
  await eventually(() => api.activeExecs === 0, "dropped session to end");
  assertEquals(api.podProcesses("default", "p").length, 1); // only the pause process

  assertEquals(api.countRequests({ subresource: "exec", code: 101 }), 1);
});

test("close() leaves no processes, mount namespaces or files behind", async () => {
  // `await using` cleans up if an assertion fails first (close() is idempotent).
  await using api = await startFakeApiServer({ nodes: NODES });
  const { kc, core } = await adminClients(api);
  await runningPod(api, core, "x1", "node-a");
  await runningPod(api, core, "x2", "node-b");
  await core.createNamespacedPod({
    namespace: "default",
    body: podBody("cmd", "node-b", {
      spec: { containers: [{ name: "c", image: "busybox", command: ["sleep", "1000"] }] },
    }),
  });
  await api.waitForPod("default", "cmd", isRunning);
  await clientExec(kc, "x1", ["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"]);
  const ws = await openSocket(api, execPath("x2", ["sleep", "1000"]));
  assert(ws instanceof WebSocket);
  const closed = new Promise((r) => ws.on("close", r));
  await eventually(() => api.podProcesses("default", "x2").length >= 2, "exec to start");
  const pids = api.allPodProcesses();
  assert(pids.length >= 6, `expected pause + exec processes, got ${pids}`);
  const namespaces = new Set(pids.map((p) => Deno.readLinkSync(`/proc/${p}/ns/mnt`)));
  // An exec being set up may still be in the host's namespace for a moment.
  namespaces.delete(Deno.readLinkSync("/proc/self/ns/mnt"));
  assertEquals(namespaces.size, 3);
  const dir = api.dir;
  await api.close();
  await closed;
  for (const p of pids) assert(!isAlive(p), `process ${p} survived close()`);
  let exists = true;
  try {
    Deno.statSync(dir);
  } catch {
    exists = false;
  }
  assert(!exists, "temp dir left behind");
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let ns = "";
    try {
      ns = Deno.readLinkSync(`/proc/${entry.name}/ns/mnt`);
    } catch {
      continue; // gone, or a kernel thread
    }
    assert(!namespaces.has(ns), `process ${entry.name} still in a pod mount namespace`);
  }
});

test("the in-process TLS front end (node:https in Deno) works too", async () => {
  await using api = await startFakeApiServer({ nodes: NODES, tlsFrontend: "deno" });
  assertEquals(api.tlsFrontend, "deno");
  const { kc, core } = await adminClients(api);
  await runningPod(api, core, "p", "node-a");
  const result = await clientExec(kc, "p", ["sh", "-c", "cat | wc -c"], new Uint8Array(300_000));
  assertEquals(new TextDecoder().decode(result.stdout).trim(), "300000");
  const bob = clients(await api.kubeconfig({ user: "bob", groups: ["a", "b"] }));
  api.deny({ group: "b", verb: "list", resource: "pods" });
  const denied = await apiError(bob.core.listNamespacedPod({ namespace: "default" }));
  assertEquals(denied.code, 403);
});

test("container commands: exit codes, restarts, logs", async () => {
  await using api = await startFakeApiServer({ nodes: NODES, crashLoopBackoffMs: 100 });
  const { core } = await adminClients(api);
  const withCommand = (name: string, command: string[], restartPolicy = "Never") =>
    core.createNamespacedPod({
      namespace: "default",
      body: podBody(name, "node-a", {
        spec: { restartPolicy, containers: [{ name: "c", image: "busybox", command }] },
      }),
    });
  await withCommand("ok", ["sh", "-c", "echo hello; echo oops >&2"]);
  await withCommand("bad", ["sh", "-c", "exit 4"]);
  await withCommand("crashy", ["sh", "-c", "echo run; exit 1"], "Always");
  const ok = await api.waitForPod("default", "ok", (p) => p.status?.phase === "Succeeded");
  assertEquals(ok.status.containerStatuses[0].state.terminated.reason, "Completed");
  assertEquals(
    await core.readNamespacedPodLog({ namespace: "default", name: "ok" }),
    "hello\noops\n",
  );
  const bad = await api.waitForPod("default", "bad", (p) => p.status?.phase === "Failed");
  assertEquals(bad.status.containerStatuses[0].state.terminated.exitCode, 4);
  const crashy = await api.waitForPod(
    "default",
    "crashy",
    (p) => p.status?.containerStatuses?.[0]?.restartCount >= 2,
  );
  assertEquals(crashy.status.phase, "Running");
  assertEquals(crashy.status.containerStatuses[0].lastState.terminated.exitCode, 1);
  const previous = await core.readNamespacedPodLog({
    namespace: "default",
    name: "crashy",
    previous: true,
  });
  assertEquals(previous, "run\n");
});

test("pagination, dry run, taint eviction, namespace deletion", async () => {
  await using api = await startFakeApiServer({ nodes: NODES });
  const { core } = await adminClients(api);
  for (let i = 0; i < 5; i++) {
    await core.createNamespacedPod({ namespace: "default", body: podBody(`p${i}`, "ghost") });
  }
  const first = await core.listNamespacedPod({ namespace: "default", limit: 2 });
  assertEquals(first.items.map((p) => p.metadata?.name), ["p0", "p1"]);
  assertEquals(first.metadata?.remainingItemCount, 3);
  const rest = await core.listNamespacedPod({
    namespace: "default",
    limit: 10,
    _continue: first.metadata?._continue,
  });
  assertEquals(rest.items.map((p) => p.metadata?.name), ["p2", "p3", "p4"]);
  assertEquals(rest.metadata?._continue, undefined);

  const dry = await core.createNamespacedPod({
    namespace: "default",
    dryRun: "All",
    body: podBody("dry", "node-a"),
  });
  assertEquals(dry.metadata?.name, "dry");
  assertEquals(api.pod("default", "dry"), undefined);

  await runningPod(api, core, "evict", "node-b");
  api.updateNode("node-b", { taints: [{ key: "maintenance", effect: "NoExecute" }] });
  await api.waitForPodDeleted("default", "evict");
  const events = await core.listNamespacedEvent({
    namespace: "default",
    fieldSelector: "involvedObject.name=evict",
  });
  assert(events.items.some((e) => e.reason === "TaintManagerEviction"));

  api.addNamespace("scratch");
  await runningPod(api, core, "inside", "node-a", "scratch");
  const deleting = await core.deleteNamespace({ name: "scratch" });
  assertEquals((deleting as any).status?.phase, "Terminating");
  await eventually(() => !api.object("namespaces", undefined, "scratch"), "namespace removal");
  assertEquals(api.pods("scratch"), []);
});

test("exec: base64 and tty variants, and keeping processes on disconnect", async () => {
  await using api = await startFakeApiServer({ nodes: NODES, killExecOnDisconnect: false });
  const { core } = await adminClients(api);
  await runningPod(api, core, "t", "node-a");
  const command = ["sh", "-c", "echo out; echo err >&2; exit 2"];
  const b64 = await openSocket(api, execPath("t", command, "stdout=true&stderr=true"), {
    protocols: ["v4.base64.channel.k8s.io"],
  });
  assert(b64 instanceof WebSocket);
  const frames: string[] = [];
  b64.on("message", (d: Buffer) => frames.push(d.toString()));
  await new Promise((r) => b64.on("close", r));
  const decoded = frames.map((f) => `${f[0]}:${atob(f.slice(1))}`);
  assertEquals(decoded.slice(0, 3), ["1:", "1:out\n", "2:err\n"]);
  assertEquals(JSON.parse(decoded[3].slice(2)).details.causes[0].message, "2");

  const tty = await openSocket(api, execPath("t", command, "stdout=true&stderr=true&tty=true"), {
    protocols: ["v4.channel.k8s.io"],
  });
  assert(tty instanceof WebSocket);
  const merged = await collect(tty);
  assertEquals(merged.stdout.toString(), "out\nerr\n");
  assertEquals(merged.stderr.length, 0);

  const ws = await openSocket(api, execPath("t", ["sh", "-c", "echo $$; exec sleep 1000"]));
  assert(ws instanceof WebSocket);
  const pid = await new Promise<number>((resolve) => {
    ws.on("message", (d: Buffer) => {
      if (d[0] === 1 && d.length > 1) resolve(Number(d.subarray(1).toString()));
    });
  });
  ws.close();
  await new Promise((r) => setTimeout(r, 200));
  assert(isAlive(pid), "killExecOnDisconnect: false keeps the process");
  assertEquals(api.activeExecs, 1);
  await core.deleteNamespacedPod({ namespace: "default", name: "t", gracePeriodSeconds: 0 });
  await eventually(() => !isAlive(pid), "the process to die with its pod");
});

test("volumes: hostPath binds and emptyDir, private to the pod", async () => {
  const mountPoint = `/kube-apiserver-test-${crypto.randomUUID().slice(0, 8)}`;
  await using api = await startFakeApiServer({ nodes: NODES });
  const { kc, core } = await adminClients(api);
  await core.createNamespacedPod({
    namespace: "default",
    body: podBody("vol", "node-a", {
      spec: {
        volumes: [
          { name: "host", hostPath: { path: "/" } },
          { name: "scratch", emptyDir: {} },
        ],
        containers: [{
          name: "c",
          image: "busybox",
          volumeMounts: [
            { name: "host", mountPath: mountPoint, readOnly: true },
            { name: "scratch", mountPath: "/tmp/scratch" },
          ],
        }],
      },
    }),
  });
  await api.waitForPod("default", "vol", isRunning);
  const marker = `/tmp/host-marker-${crypto.randomUUID()}`;
  await Deno.writeTextFile(marker, "from the host\n");
  try {
    const result = await clientExec(kc, "vol", [
      "sh",
      "-c",
      `cat ${mountPoint}${marker}; test ! -e ${marker} && echo private-tmp; ` +
      `touch ${mountPoint}/tmp/x 2>/dev/null || echo read-only; ` +
      "echo data > /tmp/scratch/f && cat /tmp/scratch/f",
    ]);
    assertEquals(
      new TextDecoder().decode(result.stdout),
      "from the host\nprivate-tmp\nread-only\ndata\n",
    );
  } finally {
    await Deno.remove(marker);
  }
  await api.close();
  let exists = true;
  try {
    Deno.statSync(mountPoint);
  } catch {
    exists = false;
  }
  assert(!exists, "the mount point created on the host was left behind");
});

test("kubelet files: kubelet-style cgroups and log files; image pulls failing on one node", async () => {
  // What a test process killed before its cleanup left: removed by the next one.
  const dead = new Deno.Command("true").spawn();
  await dead.status;
  const staleUid = crypto.randomUUID();
  const staleCgroup = `${
    cgroupHierarchies()[0]
  }/kube-apiserver-${dead.pid}-1/kubepods/pod${staleUid}`;
  const staleLogs = `/var/log/pods/default_old_${staleUid}`;
  const staleLink = `/var/log/containers/old_default_c-${"ab".repeat(32)}.log`;
  Deno.mkdirSync(staleCgroup, { recursive: true });
  Deno.mkdirSync(`${staleLogs}/c`, { recursive: true });
  Deno.mkdirSync("/var/log/containers", { recursive: true });
  Deno.symlinkSync(`${staleLogs}/c/0.log`, staleLink);
  await using api = await startFakeApiServer({ nodes: NODES, kubeletFiles: true });
  for (const path of [staleCgroup, staleLogs, staleLink]) {
    let exists = true;
    try {
      Deno.lstatSync(path);
    } catch {
      exists = false;
    }
    assert(!exists, `stale ${path} removed`);
  }
  const { kc, core } = await adminClients(api);
  const undo = api.failImagePull("busybox:1.36", "pull refused on node-b", "node-b");
  await core.createNamespacedPod({
    namespace: "default",
    body: podBody("files", "node-a", {
      spec: { containers: [{ name: "c", image: "busybox:1.36", command: ["sleep", "1000"] }] },
    }),
  });
  await core.createNamespacedPod({ namespace: "default", body: podBody("pulls", "node-b") });
  const pod = await api.waitForPod("default", "files", isRunning);
  const failing = await api.waitForPod(
    "default",
    "pulls",
    (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "ErrImagePull",
  );
  assertEquals(failing.status.containerStatuses[0].state.waiting.message, "pull refused on node-b");
  undo();
  await api.waitForPod("default", "pulls", isRunning);

  const uid = pod.metadata.uid!;
  const id = pod.status.containerStatuses[0].containerID.replace("containerd://", "");
  assertMatch(id, /^[0-9a-f]{64}$/);
  const cgroup = new RegExp(`^/kube-apiserver-\\d+-\\d+/kubepods/besteffort/pod${uid}/${id}$`);
  // Every process of the pod (the pause process too) is in the container's cgroup.
  const pids = api.podProcesses("default", "files");
  assert(pids.length >= 2, `pause and sleep: ${pids}`);
  for (const pid of pids) {
    const lines = Deno.readTextFileSync(`/proc/${pid}/cgroup`).split("\n")
      .filter((line) => /^\d+:(pids|name=systemd|):/.test(line));
    assert(lines.length > 0, `cgroup lines of ${pid}`);
    for (const line of lines) assertMatch(line.split(":")[2], cgroup);
  }
  // So is an exec'd process.
  const exec = await clientExec(kc, "files", ["cat", "/proc/self/cgroup"]);
  const execLines = new TextDecoder().decode(exec.stdout).split("\n").filter((l) => /^0::/.test(l));
  for (const line of execLines) assertMatch(line.slice(3), cgroup);

  const logDir = `/var/log/pods/default_files_${uid}`;
  const link = `/var/log/containers/files_default_c-${id}.log`;
  assertEquals(Deno.readLinkSync(link), `${logDir}/c/0.log`);
  assertEquals(Deno.readTextFileSync(link), "");

  await core.deleteNamespacedPod({ name: "files", namespace: "default" });
  await api.waitForPodDeleted("default", "files");
  const gone = (path: string) => {
    try {
      Deno.lstatSync(path);
      return false;
    } catch {
      return true;
    }
  };
  assert(gone(link) && gone(logDir), "the pod's log files are removed with it");
  const mounts = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd"];
  for (const mount of mounts) {
    assert(gone(`${mount}${cgroup.source.split("/kubepods")[0]}/kubepods/besteffort/pod${uid}`));
  }
  await api.close();
  for (const mount of mounts) {
    for (const entry of gone(mount) ? [] : Deno.readDirSync(mount)) {
      assert(!entry.name.startsWith(`kube-apiserver-${Deno.pid}-`), `${mount}/${entry.name} left`);
    }
  }
});
