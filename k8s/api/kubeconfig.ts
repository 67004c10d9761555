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
import { dirname } from "node:path";
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
 * account; then `--context`. Checks what the selected context needs (its
 * cluster, its user, the files they name), so that a mistake in the file is
 * one line naming it rather than a failure of the first request.
 */
export function loadKubeconfig(options: KubeconfigOptions = {}): LoadedKubeconfig {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const config = new k8s.KubeConfig();
  let source: string;
  if (options.kubeconfig) {
    source = options.kubeconfig;
    if (!exists(source)) throw new TcpgadgetError(`kubeconfig ${source} not found`);
    loadFile(config, source);
  } else if (env("KUBECONFIG")) {
    const files = env("KUBECONFIG")!.split(":").filter(Boolean);
    source = files.join(":");
    const found = files.filter(exists);
    if (found.length === 0) {
      throw new TcpgadgetError(`no kubeconfig: KUBECONFIG names ${source}, which does not exist`);
    }
    // Merged in order; the first file's current context wins, as kubectl does.
    loadFile(config, found[0]);
    for (const file of found.slice(1)) {
      const more = new k8s.KubeConfig();
      loadFile(more, file);
      config.mergeConfig(more, true);
    }
  } else if (env("HOME") && exists(`${env("HOME")}/.kube/config`)) {
    source = `${env("HOME")}/.kube/config`;
    loadFile(config, source);
  } else if (exists(SERVICE_ACCOUNT_TOKEN) && env("KUBERNETES_SERVICE_HOST")) {
    source = "in-cluster service account";
    try {
      config.loadFromCluster();
    } catch (error) {
      throw new TcpgadgetError(`invalid ${source}: ${errorLine(error)}`, { cause: error });
    }
  } else {
    throw new TcpgadgetError(
      "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config",
    );
  }
  const names = (items: { name: string }[]) => items.map((item) => item.name).join(", ") || "none";
  if (options.context) {
    if (!config.getContextObject(options.context)) {
      throw new TcpgadgetError(
        `context "${options.context}" not in kubeconfig ${source} (contexts: ${
          names(config.getContexts())
        })`,
      );
    }
    config.setCurrentContext(options.context);
  }
  if (config.getContexts().length === 0) {
    throw new TcpgadgetError(`kubeconfig ${source} defines no contexts`);
  }
  const context = config.getCurrentContext();
  if (!context) {
    throw new TcpgadgetError(
      `kubeconfig ${source} has no current context: pass --context (contexts: ${
        names(config.getContexts())
      })`,
    );
  }
  const contextObject = config.getContextObject(context);
  if (!contextObject) {
    throw new TcpgadgetError(
      `kubeconfig ${source}: its current context "${context}" is not defined in it (contexts: ${
        names(config.getContexts())
      })`,
    );
  }
  const where = `kubeconfig ${source}: context "${context}"`;
  const cluster = config.getCluster(contextObject.cluster);
  if (!cluster) {
    throw new TcpgadgetError(
      `${where} names cluster "${contextObject.cluster}", which is not defined in it (clusters: ${
        names(config.getClusters())
      })`,
    );
  }
  if (!cluster.server) throw new TcpgadgetError(`${where} names no cluster server`);
  // A context without a user is anonymous; one naming a missing user is a mistake.
  const user = contextObject.user ? config.getUser(contextObject.user) : undefined;
  if (contextObject.user && !user) {
    throw new TcpgadgetError(
      `${where} names user "${contextObject.user}", which is not defined in it (users: ${
        names(config.getUsers())
      })`,
    );
  }
  const files: [string | undefined, string][] = [
    [cluster.caFile, `certificate-authority of cluster "${cluster.name}"`],
    [user?.certFile, `client-certificate of user "${user?.name}"`],
    [user?.keyFile, `client-key of user "${user?.name}"`],
  ];
  for (const [file, what] of files) {
    if (!file) continue;
    try {
      Deno.readFileSync(file);
    } catch (error) {
      throw new TcpgadgetError(
        `kubeconfig ${source}: cannot read ${file} (${what}): ${fileProblem(error)}`,
      );
    }
  }
  return {
    config,
    source,
    context,
    namespace: contextObject.namespace || "default",
    server: cluster.server,
  };
}

/** Reads one kubeconfig file into `config`, or throws one line naming it. */
function loadFile(config: k8s.KubeConfig, file: string): void {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    throw new TcpgadgetError(`cannot read kubeconfig ${file}: ${fileProblem(error)}`);
  }
  if (text.trim() === "") throw new TcpgadgetError(`kubeconfig ${file} is empty`);
  try {
    config.loadFromString(text);
  } catch (error) {
    // client-node reads a document that is nothing (only comments, `---`,
    // `~`) as null, then fails to read its `clusters`.
    if (error instanceof TypeError && /reading 'clusters'/.test(error.message)) {
      throw new TcpgadgetError(`kubeconfig ${file} is empty (no YAML document in it)`);
    }
    // A file it names (a user's token-file) cannot be read.
    const path = (error as { path?: unknown }).path;
    if (typeof path === "string") {
      throw new TcpgadgetError(`kubeconfig ${file}: cannot read ${path}: ${fileProblem(error)}`);
    }
    throw new TcpgadgetError(`invalid kubeconfig ${file}: ${errorLine(error)}`, { cause: error });
  }
  // Files it names are relative to it, as kubectl takes them.
  config.makePathsAbsolute(dirname(file));
}

/** Why a file could not be read, in a few words. */
function fileProblem(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  if (error instanceof Deno.errors.NotFound || code === "ENOENT") return "no such file";
  if (error instanceof Deno.errors.PermissionDenied || code === "EACCES") {
    return "permission denied";
  }
  if (error instanceof Deno.errors.IsADirectory || code === "EISDIR") return "it is a directory";
  return errorLine(error);
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
