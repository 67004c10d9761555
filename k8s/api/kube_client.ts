/**
 * A client of the Kubernetes API bound to a loaded kubeconfig: every
 * request is named, bounded in time (api_timeout.ts; a request not answered
 * in time is aborted, its connection closed) and its failure translated
 * into one line (api_errors.ts).
 *
 * @module
 */

import "./silence_node_warnings.ts";
import * as k8s from "@kubernetes/client-node";
import { apiError, noAnswerError, type RequestDescription } from "./api_errors.ts";
import { apiTimeoutMs } from "./api_timeout.ts";
import type { LoadedKubeconfig } from "./kubeconfig.ts";

/** Options of {@link KubeClient}. */
export interface KubeClientOptions {
  /** How long a request may go unanswered (default: api_timeout.ts's bound). */
  timeoutMs?: number;
}

/** A CoreV1 client bound to a loaded kubeconfig, with errors translated. */
export class KubeClient {
  readonly kubeconfig: LoadedKubeconfig;
  /** How long a request may go unanswered, unless a call says otherwise. */
  readonly timeoutMs: number;

  constructor(kubeconfig: LoadedKubeconfig, options: KubeClientOptions = {}) {
    this.kubeconfig = kubeconfig;
    this.timeoutMs = options.timeoutMs ?? apiTimeoutMs();
  }

  /**
   * Runs a request, turning a failure into a one-line error naming it; one
   * not answered within `timeoutMs` is aborted and is such an error too
   * (a NoAnswerError).
   */
  async call<T>(
    request: RequestDescription,
    run: (core: k8s.CoreV1Api) => Promise<T>,
    timeoutMs: number = this.timeoutMs,
  ): Promise<T> {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        run(this.#core(abort.signal)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            abort.abort();
            reject(noAnswerError(this.kubeconfig, timeoutMs));
          }, timeoutMs);
        }),
      ]);
    } catch (error) {
      throw apiError(error, request, this.kubeconfig);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A CoreV1 client whose requests `signal` aborts (a cheap object: one per call). */
  #core(signal: AbortSignal): k8s.CoreV1Api {
    const { config, server } = this.kubeconfig;
    return new k8s.CoreV1Api(k8s.createConfiguration({
      baseServer: new k8s.ServerConfiguration(server, {}),
      authMethods: { default: config },
      promiseMiddleware: [{
        pre: (context) => {
          context.setSignal(signal);
          return Promise.resolve(context);
        },
        post: (context) => Promise.resolve(context),
      }],
    }));
  }
}
