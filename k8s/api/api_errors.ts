/**
 * API failures turned into one-line errors a user can act on: who lacks
 * which permission, which namespace label would allow a privileged pod,
 * which server cannot be reached.
 *
 * @module
 */

import "./silence_node_warnings.ts";
import * as k8s from "@kubernetes/client-node";
import { errorLine, TcpgadgetError } from "../../core/errors.ts";
import { secondsText } from "./api_timeout.ts";

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

/**
 * The API server could not be reached: the connection was refused or
 * reset, TLS failed, or no answer came in time. Unlike an answer with an
 * error, this says that the kubeconfig leads nowhere useful.
 */
export class ApiUnreachableError extends TcpgadgetError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ApiUnreachableError";
  }
}

/** The API server did not answer within the bound (see api_timeout.ts). */
export class NoAnswerError extends ApiUnreachableError {
  constructor(message: string) {
    super(message);
    this.name = "NoAnswerError";
  }
}

/** Which server, context and kubeconfig, for messages. */
function serverText(origin: ApiOrigin): string {
  const context = origin.context
    ? ` (context "${origin.context}"${origin.source ? ` of kubeconfig ${origin.source}` : ""})`
    : "";
  return `the Kubernetes API server at ${origin.server}${context}`;
}

/**
 * The error for a server that cannot be reached, with why.
 *
 * @example
 * ```ts
 * import { unreachableError } from "./api_errors.ts";
 * import assert from "node:assert/strict";
 * const origin = { server: "https://10.0.0.1:6443", context: "prod", source: "/kc" };
 * assert.equal(
 *   unreachableError(origin, "connect ECONNREFUSED 10.0.0.1:6443").message,
 *   'cannot connect to the Kubernetes API server at https://10.0.0.1:6443 (context "prod" of kubeconfig /kc): connect ECONNREFUSED 10.0.0.1:6443',
 * );
 * ```
 */
export function unreachableError(
  origin: ApiOrigin,
  reason: string,
  cause?: unknown,
): ApiUnreachableError {
  return new ApiUnreachableError(`cannot connect to ${serverText(origin)}: ${reason}`, { cause });
}

/**
 * The error for a server that did not answer within `timeoutMs`.
 *
 * @example
 * ```ts
 * import { noAnswerError } from "./api_errors.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   noAnswerError({ server: "https://127.0.0.1:6443", context: "x", source: "/kc" }, 20_000)
 *     .message,
 *   'cannot connect to the Kubernetes API server at https://127.0.0.1:6443 (context "x" of kubeconfig /kc): no answer within 20 s',
 * );
 * ```
 */
export function noAnswerError(origin: ApiOrigin, timeoutMs: number): NoAnswerError {
  return new NoAnswerError(
    `cannot connect to ${serverText(origin)}: no answer within ${secondsText(timeoutMs)}`,
  );
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
    const message = errorLine(error);
    const code = (error as { code?: unknown }).code;
    if (
      (error as Error)?.name === "FetchError" || NETWORK_ERROR.test(`${code ?? ""} ${message}`)
    ) {
      // node-fetch: "request to URL failed, reason: connect ECONNREFUSED ..."
      const reason = message.match(/, reason: (.*)$/)?.[1] ?? message;
      return unreachableError(origin, reason, error);
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
