/**
 * Access to the Kubernetes API: which kubeconfig and context, the client,
 * and the translation of API failures into one-line errors a user can act
 * on (who lacks which permission, which namespace label would allow a
 * privileged pod, which server cannot be reached).
 *
 * @module
 */

import { pathExists as exists } from "../core/system.ts";
import "./node_warnings.ts";
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
      `invalid kubeconfig ${source}: ${firstLine(error)}`,
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

/** Which API server a request went to, for messages. */
export interface ApiOrigin {
  server: string;
  context?: string;
  /** Where the kubeconfig was read from. */
  source?: string;
  /** The kubeconfig (to name its credential plugin when that fails). */
  config?: k8s.KubeConfig;
}

// Failures to open a connection (node-fetch's FetchError carries the
// system error's code), as opposed to an answer from the server.
const NETWORK_ERROR =
  /ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|socket hang up|certificate|SSL|TLS/i;

/**
 * A one-line error for a failed API request: RBAC denials name the verb,
 * resource and namespace to grant; PodSecurity rejections name the label
 * that would allow the pod; connection failures name the server.
 */
export function apiError(
  error: unknown,
  request: RequestDescription,
  origin: ApiOrigin,
): TcpgadgetError {
  if (error instanceof TcpgadgetError) return error;
  const server = origin.server;
  const where = request.namespace ? ` in namespace "${request.namespace}"` : "";
  const what = `${request.verb} ${request.resource}${request.name ? ` "${request.name}"` : ""}`;
  const answer = statusOf(error);
  if (!answer) {
    const message = firstLine(error);
    const code = (error as { code?: unknown }).code;
    if (
      (error as Error)?.name === "FetchError" || NETWORK_ERROR.test(`${code ?? ""} ${message}`)
    ) {
      // node-fetch: "request to URL failed, reason: connect ECONNREFUSED ..."
      const reason = message.match(/, reason: (.*)$/)?.[1] ?? message;
      const context = origin.context
        ? ` (context "${origin.context}"${origin.source ? ` of kubeconfig ${origin.source}` : ""})`
        : "";
      return new TcpgadgetError(
        `cannot connect to the Kubernetes API server at ${server}${context}: ${reason}`,
        { cause: error },
      );
    }
    // No answer and no connection failure: the credentials could not be
    // had (client-node reports a failed exec plugin with its stderr alone).
    const plugin = origin.config?.getCurrentUser()?.exec?.command;
    if (plugin) {
      return new TcpgadgetError(
        `the kubeconfig's credential plugin (${plugin}) failed: ${message}`,
        { cause: error },
      );
    }
    return new TcpgadgetError(`${what}${where} failed: ${message}`, { cause: error });
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
    // The authorizer names what it denied ("cannot get resource
    // \"pods/exec\""): an exec is checked for two verbs, say which one.
    const denied = message.match(/cannot (\S+) resource "([^"]+)"/);
    const verb = denied?.[1] ?? request.verb;
    const resource = denied?.[2] ?? request.resource;
    return new TcpgadgetError(
      `permission denied: tcpgadget needs verb "${verb}" on resource "${resource}"${
        where || " (cluster-wide)"
      }; ${message}`,
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

  /**
   * Runs a request, turning a failure into a one-line error naming it.
   * With `timeoutMs`, a server that does not answer in time (a firewall
   * that drops packets) is an error too, instead of a wait of minutes.
   */
  async call<T>(
    request: RequestDescription,
    run: (core: k8s.CoreV1Api) => Promise<T>,
    timeoutMs?: number,
  ): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const answer = run(this.core);
      if (timeoutMs === undefined) return await answer;
      return await Promise.race([
        answer,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const { server, context, source } = this.kubeconfig;
            reject(
              new TcpgadgetError(
                `cannot connect to the Kubernetes API server at ${server} (context "${context}" of kubeconfig ${source}): no answer within ${
                  timeoutMs / 1000
                } s`,
              ),
            );
          }, timeoutMs);
        }),
      ]);
    } catch (error) {
      throw apiError(error, request, this.kubeconfig);
    } finally {
      clearTimeout(timer);
    }
  }
}
