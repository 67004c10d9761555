/**
 * client-node's watch with a bound on the wait for the server's answer.
 * Its Watch awaits the response headers of a watch request without any
 * bound (in 1.4.0 its own 30 s timeout signal is overwritten before use),
 * and an informer's start() awaits that: a server that accepts the
 * connection and never answers would hold the start forever.
 *
 * @module
 */

import "./silence_node_warnings.ts";
import * as k8s from "@kubernetes/client-node";

/**
 * A Watch whose requests fail with node-fetch's `request-timeout` error
 * when the server has not answered (connection, TLS and response headers)
 * within `timeoutMs`. The stream that follows is not bounded: a watch may
 * rightly stay quiet for minutes.
 */
export function boundedWatch(config: k8s.KubeConfig, timeoutMs: number): k8s.Watch {
  // The Watch asks the kubeconfig for its request options: this one is the
  // kubeconfig with node-fetch's `timeout` added, which bounds the wait for
  // the headers only (the body's bound applies to reading it whole, which
  // a watch never does).
  const bounded: k8s.KubeConfig = Object.create(config);
  bounded.applyToFetchOptions = async (options) => ({
    ...(await config.applyToFetchOptions(options)),
    timeout: timeoutMs,
  });
  return new k8s.Watch(bounded);
}

/**
 * Whether a watch failed because the server did not answer in time.
 *
 * @example
 * ```ts
 * import { isWatchTimeout } from "./bounded_watch.ts";
 * import assert from "node:assert/strict";
 * const timeout = Object.assign(new Error("network timeout at: https://x/api"), {
 *   name: "FetchError",
 *   type: "request-timeout",
 * });
 * assert.equal(isWatchTimeout(timeout), true);
 * assert.equal(isWatchTimeout(new Error("Forbidden")), false);
 * ```
 */
export function isWatchTimeout(error: unknown): boolean {
  return (error as { name?: unknown })?.name === "FetchError" &&
    (error as { type?: unknown }).type === "request-timeout";
}
