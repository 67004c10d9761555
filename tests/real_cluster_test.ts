/**
 * Smoke test of a real Kubernetes cluster (the one `deno task cluster:up`
 * starts on this machine, or any other): what tcpgadget's cluster mode
 * relies on works there. A server pod and a client pod of the workload
 * image talk over the pod network, seen through their logs and status; an
 * exec into a pod of the agent image runs `sh` and `sha256sum`.
 *
 * Runs against the cluster of TCPGADGET_E2E_KUBECONFIG (skipped, saying
 * so, without it). TCPGADGET_E2E_NAMESPACE (default tcpgadget-e2e),
 * TCPGADGET_E2E_WORKLOAD_IMAGE (an image with python3) and
 * TCPGADGET_E2E_IMAGE (the agent image) adapt it to another cluster.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { Writable } from "node:stream";
import assertNode from "node:assert/strict";
import { NAMESPACE as CLUSTER_NAMESPACE } from "./real_cluster/layout.ts";
import { VERSIONS } from "./real_cluster/versions.ts";

const FILE = "tests/real_cluster_test.ts";
const KUBECONFIG = Deno.env.get("TCPGADGET_E2E_KUBECONFIG");
const NAMESPACE = Deno.env.get("TCPGADGET_E2E_NAMESPACE") ?? CLUSTER_NAMESPACE;
const WORKLOAD_IMAGE = Deno.env.get("TCPGADGET_E2E_WORKLOAD_IMAGE") ??
  VERSIONS.images.workload.name;
const AGENT_IMAGE = Deno.env.get("TCPGADGET_E2E_IMAGE") ?? "debian:bookworm-slim";

if (!KUBECONFIG) {
  console.warn(
    `SKIPPED (${FILE}, real cluster): TCPGADGET_E2E_KUBECONFIG is not set (deno task cluster:up prints one)`,
  );
}

const PORT = 8080;

/** Accepts one connection, answers one line, says who connected. */
const SERVER = `
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", ${PORT}))
s.listen()
print("listening", flush=True)
c, peer = s.accept()
line = c.makefile().readline().strip()
c.sendall(("pong " + line + "\\n").encode())
c.close()
print("served", peer[0], line, flush=True)
`;

/** Connects to the server (retrying while it starts), sends a line, prints the answer. */
const CLIENT = `
import os, socket, sys, time
for attempt in range(60):
    try:
        c = socket.create_connection((os.environ["SERVER_IP"], ${PORT}), timeout=5)
        break
    except OSError as error:
        time.sleep(0.5)
else:
    sys.exit("could not connect: %s" % error)
c.sendall(b"ping\\n")
print("local", c.getsockname()[0], "reply", c.makefile().readline().strip(), flush=True)
`;

function randomSuffix(): string {
  return [...crypto.getRandomValues(new Uint8Array(3))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A pod that fits Pod Security "restricted", so that it runs in any namespace. */
function pod(name: string, image: string, command: string[], env: Record<string, string> = {}) {
  return {
    metadata: { name, labels: { "app.kubernetes.io/name": "tcpgadget-real-cluster-test" } },
    spec: {
      restartPolicy: "Never",
      // Ends on its own if this test dies before deleting it.
      activeDeadlineSeconds: 600,
      terminationGracePeriodSeconds: 1,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65534,
        runAsGroup: 65534,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [{
        name: "main",
        image,
        imagePullPolicy: "IfNotPresent",
        command,
        env: Object.entries(env).map(([envName, value]) => ({ name: envName, value })),
        securityContext: {
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"] },
        },
      }],
    },
  } satisfies k8s.V1Pod;
}

async function waitPod(
  core: k8s.CoreV1Api,
  name: string,
  done: (pod: k8s.V1Pod) => boolean,
  what: string,
  seconds = 120,
): Promise<k8s.V1Pod> {
  const deadline = Date.now() + seconds * 1000;
  let last: k8s.V1Pod | undefined;
  while (Date.now() < deadline) {
    last = await core.readNamespacedPod({ name, namespace: NAMESPACE });
    if (done(last)) return last;
    if (last.status?.phase === "Failed") break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const waiting = last?.status?.containerStatuses?.[0]?.state?.waiting;
  throw new Error(
    `pod ${name} not ${what}: phase ${last?.status?.phase}${
      waiting ? ` (${waiting.reason}: ${waiting.message ?? ""})` : ""
    }`,
  );
}

async function deletePods(core: k8s.CoreV1Api, names: string[]): Promise<void> {
  for (const name of names) {
    try {
      await core.deleteNamespacedPod({ name, namespace: NAMESPACE, gracePeriodSeconds: 0 });
    } catch {
      // never created, or already gone
    }
  }
  const deadline = Date.now() + 60_000;
  for (const name of names) {
    while (Date.now() < deadline) {
      try {
        await core.readNamespacedPod({ name, namespace: NAMESPACE });
      } catch {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

function clients(): { kc: k8s.KubeConfig; core: k8s.CoreV1Api } {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(KUBECONFIG!);
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api) };
}

Deno.test({
  name: "real cluster: a client pod connects to a server pod's IP over the pod network",
  ignore: !KUBECONFIG,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { core } = clients();
    const suffix = randomSuffix();
    const server = `tcpg-smoke-server-${suffix}`;
    const client = `tcpg-smoke-client-${suffix}`;
    try {
      await core.createNamespacedPod({
        namespace: NAMESPACE,
        body: pod(server, WORKLOAD_IMAGE, ["python3", "-c", SERVER]),
      });
      const serving = await waitPod(
        core,
        server,
        (p) => p.status?.phase === "Running" && !!p.status.podIP,
        "running",
      );
      const serverIp = serving.status!.podIP!;
      await core.createNamespacedPod({
        namespace: NAMESPACE,
        body: pod(client, WORKLOAD_IMAGE, ["python3", "-c", CLIENT], { SERVER_IP: serverIp }),
      });
      const finished = await waitPod(
        core,
        client,
        (p) => p.status?.phase === "Succeeded",
        "succeeded",
      );
      const clientIp = finished.status!.podIP!;
      const clientLog = await core.readNamespacedPodLog({ name: client, namespace: NAMESPACE });
      assertNode.equal(clientLog.trim(), `local ${clientIp} reply pong ping`, clientLog);
      await waitPod(core, server, (p) => p.status?.phase === "Succeeded", "succeeded");
      const serverLog = await core.readNamespacedPodLog({ name: server, namespace: NAMESPACE });
      // The server saw the client's own pod IP: pod to pod, no NAT in between.
      assertNode.equal(serverLog.trim(), `listening\nserved ${clientIp} ping`, serverLog);
      assertNode.notEqual(clientIp, serverIp);
    } finally {
      await deletePods(core, [server, client]);
    }
  },
});

Deno.test({
  name: "real cluster: exec into a pod of the agent image runs sh and sha256sum",
  ignore: !KUBECONFIG,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { kc, core } = clients();
    const name = `tcpg-smoke-exec-${randomSuffix()}`;
    try {
      await core.createNamespacedPod({
        namespace: NAMESPACE,
        body: pod(name, AGENT_IMAGE, ["sleep", "600"]),
      });
      await waitPod(core, name, (p) => p.status?.phase === "Running", "running");
      let stdout = "";
      let stderr = "";
      const sink = (append: (text: string) => void) =>
        new Writable({
          write(chunk: Uint8Array, _encoding, done) {
            append(new TextDecoder().decode(chunk));
            done();
          },
        });
      const status = await new Promise<k8s.V1Status>((resolve, reject) => {
        new k8s.Exec(kc).exec(
          NAMESPACE,
          name,
          "main",
          ["sh", "-c", 'printf hello | sha256sum; stat -c %s /bin/sh >/dev/null && echo "sh ok"'],
          sink((text) => stdout += text),
          sink((text) => stderr += text),
          null,
          false,
          resolve,
        ).catch(reject);
      });
      assertNode.equal(status.status, "Success", `${JSON.stringify(status)} ${stderr}`);
      assertNode.equal(
        stdout,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  -\nsh ok\n",
        stderr,
      );
    } finally {
      await deletePods(core, [name]);
    }
  },
});
