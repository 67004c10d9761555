/**
 * Which kubeconfig and context, found as kubectl finds them: `--kubeconfig`,
 * else the files of KUBECONFIG (merged), else ~/.kube/config, else the
 * in-cluster service account; then `--context`. Every way it can be wrong
 * is one line naming the file.
 *
 * @module
 */

import "./silence_node_warnings.ts";
import * as k8s from "@kubernetes/client-node";
import { errorLine, TcpgadgetError } from "../../core/errors.ts";
import { pathExists as exists } from "../../core/system.ts";

/** Where the kubeconfig comes from. */
export interface KubeconfigOptions {
  /** `--kubeconfig`: this file only. */
  kubeconfig?: string;
  /** `--context`: this context instead of the current one. */
  context?: string;
  /** Environment (KUBECONFIG, HOME); defaults to the process's. */
  env?: (name: string) => string | undefined;
}

const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/** A loaded kubeconfig and what it selects. */
export interface LoadedKubeconfig {
  config: k8s.KubeConfig;
  /** Where it was read from, for messages. */
  source: string;
  context: string;
  /** The context's namespace, or "default". */
  namespace: string;
  server: string;
}

/**
 * Loads the kubeconfig as kubectl does: `--kubeconfig`, else the files of
 * KUBECONFIG (merged), else ~/.kube/config, else the in-cluster service
 * account; then `--context`.
 */
export function loadKubeconfig(options: KubeconfigOptions = {}): LoadedKubeconfig {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const config = new k8s.KubeConfig();
  let source = "~/.kube/config";
  try {
    if (options.kubeconfig) {
      source = options.kubeconfig;
      if (!exists(source)) throw new TcpgadgetError(`kubeconfig ${source} not found`);
      config.loadFromFile(source);
    } else if (env("KUBECONFIG")) {
      const files = env("KUBECONFIG")!.split(":").filter(Boolean);
      source = files.join(":");
      const missing = files.filter((file) => !exists(file));
      if (missing.length === files.length) {
        throw new TcpgadgetError(`no kubeconfig: KUBECONFIG names ${source}, which does not exist`);
      }
      // Merged in order; the first file's current context wins, as kubectl does.
      config.loadFromFile(files.find(exists)!);
      for (const file of files.filter(exists).slice(1)) {
        const more = new k8s.KubeConfig();
        more.loadFromFile(file);
        config.mergeConfig(more, true);
      }
    } else if (env("HOME") && exists(`${env("HOME")}/.kube/config`)) {
      source = `${env("HOME")}/.kube/config`;
      config.loadFromFile(source);
    } else if (exists(SERVICE_ACCOUNT_TOKEN) && env("KUBERNETES_SERVICE_HOST")) {
      source = "in-cluster service account";
      config.loadFromCluster();
    } else {
      throw new TcpgadgetError(
        "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config",
      );
    }
  } catch (error) {
    if (error instanceof TcpgadgetError) throw error;
    throw new TcpgadgetError(
      `invalid kubeconfig ${source}: ${errorLine(error)}`,
      { cause: error },
    );
  }
  if (options.context) {
    if (!config.getContextObject(options.context)) {
      const known = config.getContexts().map((c) => c.name).join(", ") || "none";
      throw new TcpgadgetError(
        `context "${options.context}" not in kubeconfig ${source} (contexts: ${known})`,
      );
    }
    config.setCurrentContext(options.context);
  }
  const context = config.getCurrentContext();
  const contextObject = config.getContextObject(context);
  if (!context || !contextObject) {
    throw new TcpgadgetError(`kubeconfig ${source} has no current context: pass --context`);
  }
  const cluster = config.getCurrentCluster();
  if (!cluster?.server) {
    throw new TcpgadgetError(`kubeconfig ${source}: context "${context}" names no cluster server`);
  }
  return {
    config,
    source,
    context,
    namespace: contextObject.namespace || "default",
    server: cluster.server,
  };
}

/** The kubeconfig of the pod this runs in (its service account). */
export function inClusterKubeconfig(): LoadedKubeconfig {
  if (!exists(SERVICE_ACCOUNT_TOKEN) || !Deno.env.get("KUBERNETES_SERVICE_HOST")) {
    throw new TcpgadgetError(
      `--in-cluster: no service account here (${SERVICE_ACCOUNT_TOKEN}, KUBERNETES_SERVICE_HOST)`,
    );
  }
  const config = new k8s.KubeConfig();
  config.loadFromCluster();
  const cluster = config.getCurrentCluster();
  let namespace = "default";
  try {
    namespace = Deno.readTextFileSync(
      "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    ).trim() || namespace;
  } catch {
    // keep "default"
  }
  return {
    config,
    source: "in-cluster service account",
    context: config.getCurrentContext(),
    namespace,
    server: cluster?.server ?? "",
  };
}
