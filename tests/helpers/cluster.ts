/**
 * Cluster mode against the fake Kubernetes API server (tests/kube_apiserver):
 * a fake cluster whose nodes all are this machine, the command line run
 * against it, test actors running inside its pods, and the checks that a
 * run left nothing behind.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { PassThrough, Writable } from "node:stream";
import type { Buffer } from "node:buffer";
import { assert, assertEquals } from "./assert.ts";
import { CliRun } from "./cli.ts";
import { BPF_SKIP_REASON, hasCommand } from "./privileges.ts";
import {
  type FakeApiServer,
  type FakeApiServerOptions,
  startFakeApiServer,
} from "../kube_apiserver/mod.ts";
import { canUseMountNamespaces } from "../kube_apiserver/sandbox.ts";
import { kubeletFilesSkipReason } from "../kube_apiserver/kubelet_files.ts";
import { deflateSync } from "node:zlib";

/**
 * The actor's source, for `python3 -c`: the pod's file system need not see
 * this checkout (a pod has its own /tmp, where a checkout may well be).
 * Compressed, since it travels in the exec URL, whose request line must
 * stay under the API server's 16 KiB limit on headers (the plain source,
 * URL-encoded, is past it).
 */
const ACTOR_SOURCE = `import base64,zlib;exec(zlib.decompress(base64.b64decode("${
  deflateSync(Deno.readTextFileSync(new URL("./tcp_actor.py", import.meta.url))).toString(
    "base64",
  )
}")))`;

/** The label tcpgadget puts on its pods. */
export const AGENT_SELECTOR = "app.kubernetes.io/managed-by=tcpgadget";

/** Why cluster-mode tests cannot run here, or undefined. */
export function clusterSkipReason(): string | undefined {
  if (BPF_SKIP_REASON) return BPF_SKIP_REASON;
  if (!canUseMountNamespaces()) {
    return "needs unshare/nsenter/setsid/mount for the fake cluster's pods";
  }
  if (!hasCommand("openssl", "version")) return "openssl not installed (fake API server)";
  return kubeletFilesSkipReason();
}

/** A fake cluster: the API server, an admin kubeconfig file and clients. */
export class FakeCluster implements AsyncDisposable {
  readonly api: FakeApiServer;
  /** Path of the admin kubeconfig. */
  readonly kubeconfig: string;
  readonly kc: k8s.KubeConfig;
  readonly core: k8s.CoreV1Api;

  private constructor(api: FakeApiServer, kubeconfig: string, kc: k8s.KubeConfig) {
    this.api = api;
    this.kubeconfig = kubeconfig;
    this.kc = kc;
    this.core = kc.makeApiClient(k8s.CoreV1Api);
  }

  /** Two nodes (node-a, node-b) unless told otherwise; kubelet files on. */
  static async start(
    options: FakeApiServerOptions & { namespace?: string } = {},
  ): Promise<FakeCluster> {
    const api = await startFakeApiServer({
      nodes: [{ name: "node-a" }, { name: "node-b" }],
      kubeletFiles: true,
      ...options,
    });
    const path = `${api.dir}/kubeconfig`;
    await api.writeKubeconfig(path, { namespace: options.namespace });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(path);
    return new FakeCluster(api, path, kc);
  }

  /**
   * Writes a kubeconfig for another user, authenticated by client
   * certificate, bearer token, or an exec credential plugin (a shell
   * command printing the user's token as an ExecCredential).
   */
  async userKubeconfig(
    user: string,
    auth: "cert" | "token" | "exec-plugin" = "cert",
  ): Promise<string> {
    const path = `${this.api.dir}/kubeconfig-${user}-${auth}`;
    if (auth !== "exec-plugin") {
      await this.api.writeKubeconfig(path, { user, auth });
      return path;
    }
    const { token } = await this.api.credentials(user);
    const credential = JSON.stringify({
      apiVersion: "client.authentication.k8s.io/v1",
      kind: "ExecCredential",
      status: { token },
    });
    const yaml = (await this.api.kubeconfig({ user, auth: "token" }))
      .replace(
        /^ {4}token: .*$/m,
        [
          "    exec:",
          "      apiVersion: client.authentication.k8s.io/v1",
          "      command: sh",
          `      args: ["-c", ${JSON.stringify(`echo '${credential}'`)}]`,
          "      interactiveMode: Never",
        ].join("\n"),
      );
    await Deno.writeTextFile(path, yaml, { mode: 0o600 });
    return path;
  }

  /** Starts `tcpgadget trace tcp --cluster --kubeconfig K <args>`. */
  trace(args: string[], kubeconfig = this.kubeconfig): CliRun {
    return CliRun.start(["trace", "tcp", "--cluster", "--kubeconfig", kubeconfig, ...args]);
  }

  /** Runs `tcpgadget <args>` to the end. */
  run(args: string[], env?: Record<string, string>) {
    return CliRun.run(args, { env });
  }

  /** Creates a pod on a node whose one container sleeps, and waits until it runs. */
  async workload(
    namespace: string,
    name: string,
    options: { node?: string; container?: string; labels?: Record<string, string> } = {},
  ): Promise<k8s.V1Pod> {
    await this.core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name, labels: options.labels },
        spec: {
          nodeName: options.node ?? "node-a",
          terminationGracePeriodSeconds: 1,
          containers: [{
            name: options.container ?? "main",
            image: "python:3.11-slim",
            command: ["sleep", "3600"],
          }],
        },
      },
    });
    await this.api.waitForPod(namespace, name, (pod) => pod.status?.phase === "Running");
    return await this.core.readNamespacedPod({ namespace, name });
  }

  /** The names of tcpgadget's pods now. */
  agentPods(): string[] {
    return this.api.pods()
      .filter((pod) => pod.metadata.labels?.["app.kubernetes.io/managed-by"] === "tcpgadget")
      .map((pod) => `${pod.metadata.namespace}/${pod.metadata.name}`).sort();
  }

  /** PIDs of the processes of tcpgadget's pods now (to check later that they are gone). */
  agentProcesses(): number[] {
    return this.agentPods().flatMap((name) => {
      const [namespace, pod] = name.split("/");
      return this.api.podProcesses(namespace, pod);
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.api.close();
  }
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\S+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

/**
 * Asserts that a finished run left nothing: no tcpgadget pod, none of the
 * agent processes seen during the run (`pids`), no exec session open.
 */
export async function assertNothingLeft(cluster: FakeCluster, pids: number[]): Promise<void> {
  assertEquals(cluster.agentPods(), [], "tcpgadget's pods are deleted");
  assertEquals(pids.filter(alive), [], "the agent pods' processes are gone");
  // Without the test's own pods, no pod process at all.
  if (cluster.api.pods().length === 0) assertEquals(cluster.api.allPodProcesses(), []);
  // The server counts a session as over once it has seen its socket close.
  for (let i = 0; i < 20 && cluster.api.activeExecs > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assertEquals(cluster.api.activeExecs, 0, "no exec session is open");
}

/** Runs a command in a container (client-node's Exec) and returns its standard output. */
export function execText(
  cluster: { kc: k8s.KubeConfig },
  namespace: string,
  pod: string,
  container: string,
  command: string[],
): Promise<string> {
  let output = "";
  const stdout = new Writable({
    write(chunk: Buffer, _encoding, done) {
      output += chunk.toString();
      done();
    },
  });
  return new Promise((resolve, reject) => {
    new k8s.Exec(cluster.kc).exec(
      namespace,
      pod,
      container,
      command,
      stdout,
      null,
      null,
      false,
      () => setTimeout(() => resolve(output), 20),
    ).catch(reject);
  });
}

// deno-lint-ignore no-explicit-any
type Reply = Record<string, any>;

/**
 * tcp_actor.py running in a pod's container, driven through an exec
 * session (client-node's own Exec, not tcpgadget's): its connections are
 * the pod's. In the test API server's pods or a real cluster's (any
 * `cluster` with a KubeConfig); `pid` is the actor's PID in its pod.
 */
export class PodActor {
  readonly comm: string;
  pid = 0;
  readonly #stdin = new PassThrough();
  readonly #lines: string[] = [];
  #waiter: (() => void) | undefined;
  #ended = false;
  #stderr = "";
  #done: Promise<void> | undefined;

  private constructor(comm: string) {
    this.comm = comm;
  }

  /** Starts the actor named `comm` in `namespace/pod`'s container. */
  static async start(
    cluster: { kc: k8s.KubeConfig },
    namespace: string,
    pod: string,
    container: string,
    comm: string,
  ): Promise<PodActor> {
    const actor = new PodActor(comm);
    let partial = "";
    const stdout = new Writable({
      write(chunk: Buffer, _encoding, done) {
        const lines = (partial + chunk.toString()).split("\n");
        partial = lines.pop() ?? "";
        actor.#lines.push(...lines.filter(Boolean));
        actor.#waiter?.();
        done();
      },
    });
    const stderr = new Writable({
      write(chunk: Buffer, _encoding, done) {
        actor.#stderr += chunk.toString();
        done();
      },
    });
    actor.#done = new Promise<void>((resolve, reject) => {
      new k8s.Exec(cluster.kc).exec(
        namespace,
        pod,
        container,
        ["python3", "-c", ACTOR_SOURCE, comm],
        stdout,
        stderr,
        actor.#stdin,
        false,
        () => {
          actor.#ended = true;
          actor.#waiter?.();
          resolve();
        },
      ).catch(reject);
    });
    actor.#done.catch(() => {
      actor.#ended = true;
      actor.#waiter?.();
    });
    actor.pid = (await actor.do("pid")).pid;
    return actor;
  }

  /** Sends one command and returns its JSON reply. */
  async do(command: string): Promise<Reply> {
    this.#stdin.write(`${command}\n`);
    const deadline = Date.now() + 30_000;
    while (this.#lines.length === 0) {
      if (this.#ended || Date.now() > deadline) {
        throw new Error(`pod actor ${this.comm} gave no answer to "${command}": ${this.#stderr}`);
      }
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        setTimeout(resolve, 100);
      });
    }
    const reply = JSON.parse(this.#lines.shift()!) as Reply;
    assert(!String(reply.error ?? "").startsWith("unknown"), reply.error);
    return reply;
  }

  /** Ends the actor and waits for its exec session to end. */
  async stop(): Promise<void> {
    this.#stdin.write("exit\n");
    this.#stdin.end();
    await this.#done?.catch(() => {});
  }
}

/** The fields of an event a test compares exactly. */
export interface ClusterEvent {
  node: string;
  namespace: string;
  pod: string;
  container: string;
  operation: string;
  pid: number;
  comm: string;
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
}

/** The comparable part of the JSON events that touch `port`, sorted. */
export function eventsOnPort(run: CliRun, port: number): ClusterEvent[] {
  return run.json()
    .filter((e) => e.sport === port || e.dport === port)
    .map((e) => ({
      node: e.node as string,
      namespace: e.namespace as string,
      pod: e.pod as string,
      container: e.container as string,
      operation: e.operation as string,
      pid: e.pid as number,
      comm: e.comm as string,
      saddr: e.saddr as string,
      sport: e.sport as number,
      daddr: e.daddr as string,
      dport: e.dport as number,
    }))
    .sort((a, b) => JSON.stringify(a) < JSON.stringify(b) ? -1 : 1);
}

/** Sorts expected events as {@link eventsOnPort} does. */
export function sorted(events: ClusterEvent[]): ClusterEvent[] {
  return [...events].sort((a, b) => JSON.stringify(a) < JSON.stringify(b) ? -1 : 1);
}
