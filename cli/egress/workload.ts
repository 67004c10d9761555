/**
 * Who made a connection: a process outside containers (its command), or a
 * container of a pod (namespace, pod, container, and the command in it).
 *
 * @module
 */

import type { TraceEvent } from "../../core/trace_event.ts";
import { printable } from "../../core/printable.ts";

/** The process and pod behind a connection; empty strings where not applicable. */
export interface Workload {
  /** Node the connection was made on. */
  node: string;
  namespace: string;
  pod: string;
  container: string;
  /** Command name, as the kernel keeps it (15 bytes). */
  command: string;
  /** The pod's labels, when known (cluster mode, or node mode with the API). */
  labels?: Readonly<Record<string, string>>;
}

/** The workload of an event, with its pod's labels if known. */
export function workloadOf(
  event: TraceEvent,
  labels?: Readonly<Record<string, string>>,
): Workload {
  const workload: Workload = {
    node: event.node,
    namespace: event.namespace,
    pod: event.pod,
    container: event.container,
    command: event.comm,
  };
  if (labels !== undefined) workload.labels = labels;
  return workload;
}

/**
 * The workload as reports show it, escaped: `curl`, or
 * `shop/web-0/nginx (curl)` in a pod.
 *
 * @example
 * ```ts
 * import { describeWorkload } from "./workload.ts";
 * import assert from "node:assert/strict";
 * const host = { node: "n", namespace: "", pod: "", container: "", command: "curl\x1b" };
 * assert.equal(describeWorkload(host), "curl\\x1b");
 * assert.equal(
 *   describeWorkload({ ...host, namespace: "shop", pod: "web-0", container: "nginx", command: "nginx" }),
 *   "shop/web-0/nginx (nginx)",
 * );
 * ```
 */
export function describeWorkload(workload: Workload): string {
  const command = printable(workload.command);
  if (!workload.pod) return command;
  const pod = [workload.namespace, workload.pod, workload.container].map(printable);
  return `${pod.join("/")} (${command})`;
}
