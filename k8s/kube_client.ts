/**
 * Access to the Kubernetes API: which kubeconfig and context, the client,
 * and the translation of API failures into one-line errors a user can act
 * on (who lacks which permission, which namespace label would allow a
 * privileged pod, which server cannot be reached).
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { TcpgadgetError } from "../core/errors.ts";

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

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0].trim();
}

/**
 * Loads the kubeconfig as kubectl does: `--kubeconfig`, else the files of
 * KUBECONFIG (merged), else ~/.kube/config, else the in-cluster service
 * account; then `--context`.
 */
export function loadKubeconfig(options: KubeconfigOptions = {}): LoadedKubeconfig {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const config = new k8s.KubeConfig();
  let source: string;
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
      `invalid kubeconfig ${options.kubeconfig ?? env("KUBECONFIG") ?? "~/.kube/config"}: ${
        firstLine(error)
      }`,
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

/** What a request was doing, to name it in an error. */
export interface RequestDescription {
  /** Kubernetes verb: get, list, watch, create, delete, deletecollection. */
  verb: string;
  /** Resource, with subresource: "pods", "pods/exec", "nodes". */
  resource: string;
  namespace?: string;
  name?: string;
}

interface StatusBody {
  message?: string;
  reason?: string;
}

function statusOf(error: unknown): { code: number; status: StatusBody } | undefined {
  if (!(error instanceof k8s.ApiException)) return undefined;
  let status: StatusBody = {};
  const body = (error as k8s.ApiException<unknown>).body;
  try {
    status = typeof body === "string" ? JSON.parse(body) : (body as StatusBody) ?? {};
  } catch {
    status = { message: String(body) };
  }
  return { code: (error as k8s.ApiException<unknown>).code, status };
}

/** The error code of a failed request (0 if it never got an answer). */
export function httpStatus(error: unknown): number {
  return statusOf(error)?.code ?? 0;
}

/**
 * A one-line error for a failed API request: RBAC denials name the verb,
 * resource and namespace to grant; PodSecurity rejections name the label
 * that would allow the pod; connection failures name the server.
 */
export function apiError(
  error: unknown,
  request: RequestDescription,
  server: string,
): TcpgadgetError {
  if (error instanceof TcpgadgetError) return error;
  const where = request.namespace ? ` in namespace "${request.namespace}"` : "";
  const what = `${request.verb} ${request.resource}${request.name ? ` "${request.name}"` : ""}`;
  const answer = statusOf(error);
  if (!answer) {
    const message = firstLine(error);
    const cause = error instanceof Error && error.cause ? `: ${firstLine(error.cause)}` : "";
    return new TcpgadgetError(
      `cannot reach the Kubernetes API server at ${server} (${what}${where}): ${message}${cause}`,
      { cause: error },
    );
  }
  const { code, status } = answer;
  const message = (status.message ?? "").split("\n")[0];
  if (code === 401) {
    return new TcpgadgetError(
      `the Kubernetes API server at ${server} rejected the credentials (401 Unauthorized): check the kubeconfig's user`,
      { cause: error },
    );
  }
  if (code === 403 && /violates PodSecurity/.test(message)) {
    const level = message.match(/violates PodSecurity "([a-z]+):/)?.[1] ?? "baseline";
    return new TcpgadgetError(
      `PodSecurity admission (level "${level}") rejects tcpgadget's privileged pod in namespace "${request.namespace}": label it pod-security.kubernetes.io/enforce=privileged, or choose another namespace with --agent-namespace (${message})`,
      { cause: error },
    );
  }
  if (code === 403) {
    const [resource, subresource] = request.resource.split("/");
    const rule = subresource
      ? `verb "${request.verb}" on resource "${resource}/${subresource}"`
      : `verb "${request.verb}" on resource "${resource}"`;
    return new TcpgadgetError(
      `permission denied: tcpgadget needs ${rule}${where || " (cluster-wide)"}; ${message}`,
      { cause: error },
    );
  }
  if (code === 404) {
    return new TcpgadgetError(`${what}${where}: not found (${message})`, { cause: error });
  }
  return new TcpgadgetError(
    `${what}${where} failed: ${code} ${status.reason ?? ""} ${message}`.replace(/\s+/g, " ").trim(),
    { cause: error },
  );
}

/** A CoreV1 client bound to a loaded kubeconfig, with errors translated. */
export class KubeClient {
  readonly kubeconfig: LoadedKubeconfig;
  readonly core: k8s.CoreV1Api;

  constructor(kubeconfig: LoadedKubeconfig) {
    this.kubeconfig = kubeconfig;
    this.core = kubeconfig.config.makeApiClient(k8s.CoreV1Api);
  }

  /** Runs a request, turning a failure into a one-line error naming it. */
  async call<T>(request: RequestDescription, run: (core: k8s.CoreV1Api) => Promise<T>): Promise<T> {
    try {
      return await run(this.core);
    } catch (error) {
      throw apiError(error, request, this.kubeconfig.server);
    }
  }
}
