/**
 * A client of the Kubernetes API bound to a loaded kubeconfig: every
 * request is named, bounded in time and its failure translated into one
 * line (api_errors.ts).
 *
 * @module
 */

import "./silence_node_warnings.ts";
import * as k8s from "@kubernetes/client-node";
import { TcpgadgetError } from "../../core/errors.ts";
import { apiError, type RequestDescription } from "./api_errors.ts";
import type { LoadedKubeconfig } from "./kubeconfig.ts";

/**
 * How long a request may go unanswered: a server that accepts connections
 * and never answers (a stuck proxy, a firewall that drops packets) is an
 * error naming it, not a wait of minutes.
 */
export const API_TIMEOUT_MS = 20_000;

/** A CoreV1 client bound to a loaded kubeconfig, with errors translated. */
export class KubeClient {
  readonly kubeconfig: LoadedKubeconfig;
  readonly core: k8s.CoreV1Api;

  constructor(kubeconfig: LoadedKubeconfig) {
    this.kubeconfig = kubeconfig;
    this.core = kubeconfig.config.makeApiClient(k8s.CoreV1Api);
  }

  /**
   * Runs a request, turning a failure into a one-line error naming it; one
   * not answered within `timeoutMs` is such an error too.
   */
  async call<T>(
    request: RequestDescription,
    run: (core: k8s.CoreV1Api) => Promise<T>,
    timeoutMs: number = API_TIMEOUT_MS,
  ): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const answer = run(this.core);
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
