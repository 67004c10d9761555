/**
 * Faults on demand for the tests, on the running test cluster: one
 * component restarted (the kubelet, as a node upgrade does; containerd with
 * another setting, then back), and a second kube-apiserver with other flags
 * beside the first (same etcd, same certificates), for a test that needs
 * the API server to behave otherwise without disturbing anyone else's use
 * of the cluster.
 *
 * Each takes the lock `up` and `down` take, so that none of them runs in
 * between.
 *
 * @module
 */

import { ApiClient } from "./api.ts";
import { type ComponentSpec, componentSpec } from "./components.ts";
import { cache, type Component, PORTS, state } from "./layout.ts";
import { pki } from "./pki.ts";
import { checkRunning, startDetached, stopComponent } from "./processes.ts";
import { ClusterError, run, waitFor } from "./util.ts";

async function withClusterLock<T>(fn: () => Promise<T>): Promise<T> {
  using lock = await Deno.open(cache.lock, { create: true, write: true });
  await lock.lock(true);
  return await fn();
}

/** Waits until a (re)started component serves again. */
async function waitServing(component: Component): Promise<void> {
  await waitFor(`${component} to serve again`, 90, async () => {
    checkRunning(component);
    switch (component) {
      case "kubelet": {
        const response = await fetch(`http://127.0.0.1:${PORTS.kubeletHealthz}/healthz`, {
          signal: AbortSignal.timeout(2000),
        });
        return (await response.text()) === "ok" ? true : undefined;
      }
      case "containerd": {
        const result = await run("ctr", ["--address", state.containerdSocket, "version"], {
          allowFail: true,
        });
        return result.code === 0 ? true : undefined;
      }
      default: {
        using api = new ApiClient();
        return (await api.request("GET", "/readyz")).status === 200 ? true : undefined;
      }
    }
  });
}

/**
 * Stops a component of the running cluster and starts it again (with
 * `spec`, its usual command line unless given), waiting until it serves.
 * Returns the milliseconds it was down.
 */
export function restartComponent(
  component: Component,
  spec: ComponentSpec = componentSpec(component),
): Promise<number> {
  return withClusterLock(async () => {
    const started = performance.now();
    await stopComponent(component);
    await startDetached(component, spec);
    await waitServing(component);
    return performance.now() - started;
  });
}

/**
 * containerd's command line with a CRI `stream_idle_timeout` (default 4 h):
 * a copy of its config with the setting, next to it.
 */
export function containerdWithStreamIdleTimeout(timeout: string): ComponentSpec {
  const spec = componentSpec("containerd");
  const configIndex = spec.args.indexOf("--config") + 1;
  const original = Deno.readTextFileSync(spec.args[configIndex]);
  const section = '[plugins."io.containerd.grpc.v1.cri"]\n';
  if (!original.includes(section)) throw new ClusterError("containerd.toml has no CRI section");
  const path = `${state.config}/containerd-stream-idle-timeout.toml`;
  Deno.writeTextFileSync(
    path,
    original.replace(section, `${section}    stream_idle_timeout = "${timeout}"\n`),
  );
  const args = [...spec.args];
  args[configIndex] = path;
  return { ...spec, args };
}

/** A second kube-apiserver of the test cluster (see {@link startExtraApiServer}). */
export interface ExtraApiServer extends AsyncDisposable {
  port: number;
  /** An admin kubeconfig for it (a copy of the cluster's, another port). */
  kubeconfig: string;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Starts another kube-apiserver on a free port with `extraArgs` added to
 * the cluster's own flags (for example a feature gate turned off), and an
 * admin kubeconfig for it. It leaves the `kubernetes` Service's endpoints
 * to the first one. A child of the test process, stopped by disposing it
 * (and by `cluster:down`, which stops every process running the cache's
 * binaries).
 */
export async function startExtraApiServer(extraArgs: string[]): Promise<ExtraApiServer> {
  const port = freePort();
  const spec = componentSpec("kube-apiserver");
  const args = spec.args.filter((arg) => !arg.startsWith("--secure-port="))
    .concat([`--secure-port=${port}`, "--endpoint-reconciler-type=none", ...extraArgs]);
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-e2e-apiserver-" });
  const log = await Deno.open(`${dir}/kube-apiserver.log`, { write: true, create: true });
  const child = new Deno.Command(spec.binary, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logged = Promise.all([
    child.stdout.pipeTo(log.writable, { preventClose: true }),
    child.stderr.pipeTo(log.writable, { preventClose: true }),
  ]).catch(() => {});
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 2000); // it keeps nothing of its own: no need to wait for a graceful end
    await child.status;
    clearTimeout(killer);
    await logged;
    log.close();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    const client = Deno.createHttpClient({
      caCerts: [Deno.readTextFileSync(pki.ca)],
      cert: Deno.readTextFileSync(pki.cert("admin")),
      key: Deno.readTextFileSync(pki.key("admin")),
    });
    let exited = false;
    child.status.then(() => exited = true);
    try {
      await waitFor(`the extra kube-apiserver on port ${port} to be ready`, 120, async () => {
        if (exited) {
          throw new ClusterError(
            `the extra kube-apiserver exited: ${
              Deno.readTextFileSync(`${dir}/kube-apiserver.log`).trim().split("\n").slice(-1)[0]
            }`,
          );
        }
        const response = await fetch(`https://127.0.0.1:${port}/readyz`, {
          client,
          signal: AbortSignal.timeout(2000),
        });
        await response.body?.cancel();
        return response.status === 200 ? true : undefined;
      });
    } finally {
      client.close();
    }
    const kubeconfig = `${dir}/admin.kubeconfig`;
    Deno.writeTextFileSync(
      kubeconfig,
      Deno.readTextFileSync(state.adminKubeconfig).replace(
        `https://127.0.0.1:${PORTS.apiserver}`,
        `https://127.0.0.1:${port}`,
      ),
      { mode: 0o600 },
    );
    return { port, kubeconfig, [Symbol.asyncDispose]: stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
