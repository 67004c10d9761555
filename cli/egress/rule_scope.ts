/**
 * Whom a rule of a policy file applies to: a pod (by namespace and name, or
 * by labels), a container, a command name; every field given must match.
 * Rules from flags apply to everyone.
 *
 * @module
 */

import type { Workload } from "./workload.ts";

/** The scope of a rule; an empty scope applies to every connection. */
export interface RuleScope {
  /** Kubernetes namespace of the pod. */
  namespace?: string;
  /** Pod name (in a file: `pod: namespace/name`, which also sets namespace). */
  pod?: string;
  /** Labels the pod must have (all of them). */
  labels?: Readonly<Record<string, string>>;
  container?: string;
  /** Command name, compared on its first 15 bytes as the kernel keeps it. */
  command?: string;
}

const TASK_COMM_BYTES = 15;

/**
 * A command name as the kernel keeps it: its first 15 bytes (a character
 * cut in two decodes as U+FFFD, as the event decoder's does).
 *
 * @example
 * ```ts
 * import { kernelComm } from "./rule_scope.ts";
 * import assert from "node:assert/strict";
 * assert.equal(kernelComm("kube-controller-manager"), "kube-controller");
 * assert.equal(kernelComm("curl"), "curl");
 * ```
 */
export function kernelComm(command: string): string {
  const bytes = new TextEncoder().encode(command);
  if (bytes.length <= TASK_COMM_BYTES) return command;
  return new TextDecoder().decode(bytes.subarray(0, TASK_COMM_BYTES));
}

/**
 * Whether a connection of `workload` is in `scope`. A scope with labels
 * never matches a workload whose labels are unknown.
 *
 * @example
 * ```ts
 * import { inScope } from "./rule_scope.ts";
 * import assert from "node:assert/strict";
 * const web = {
 *   node: "n", namespace: "shop", pod: "web-0", container: "nginx", command: "nginx",
 *   labels: { app: "web", tier: "front" },
 * };
 * assert.ok(inScope({}, web));
 * assert.ok(inScope({ namespace: "shop", labels: { app: "web" } }, web));
 * assert.ok(!inScope({ namespace: "shop", labels: { app: "db" } }, web));
 * assert.ok(!inScope({ labels: { app: "web" } }, { ...web, labels: undefined }));
 * assert.ok(inScope({ command: "nginx", container: "nginx" }, web));
 * ```
 */
export function inScope(scope: RuleScope, workload: Workload): boolean {
  if (scope.namespace !== undefined && workload.namespace !== scope.namespace) return false;
  if (scope.pod !== undefined && workload.pod !== scope.pod) return false;
  if (scope.container !== undefined && workload.container !== scope.container) return false;
  if (scope.command !== undefined && workload.command !== kernelComm(scope.command)) return false;
  if (scope.labels !== undefined) {
    const labels = workload.labels;
    if (labels === undefined) return false;
    for (const [key, value] of Object.entries(scope.labels)) {
      if (!Object.hasOwn(labels, key) || labels[key] !== value) return false;
    }
  }
  return true;
}

/** Whether the scope is empty (the rule applies to everyone). */
export function isEmptyScope(scope: RuleScope): boolean {
  return scope.namespace === undefined && scope.pod === undefined &&
    scope.labels === undefined && scope.container === undefined && scope.command === undefined;
}

/**
 * The scope as reports show it (escaped by the caller where it must be):
 * `pod shop/web-0 container nginx`, `labels app=web`, `command npm`.
 *
 * @example
 * ```ts
 * import { describeScope } from "./rule_scope.ts";
 * import assert from "node:assert/strict";
 * assert.equal(describeScope({ namespace: "shop", pod: "web-0", container: "app" }), "pod shop/web-0 container app");
 * assert.equal(describeScope({ namespace: "shop", labels: { app: "web" } }), "namespace shop labels app=web");
 * assert.equal(describeScope({}), "");
 * ```
 */
export function describeScope(scope: RuleScope): string {
  const parts: string[] = [];
  if (scope.pod !== undefined) parts.push(`pod ${scope.namespace ?? ""}/${scope.pod}`);
  else if (scope.namespace !== undefined) parts.push(`namespace ${scope.namespace}`);
  if (scope.labels !== undefined) {
    parts.push(`labels ${Object.entries(scope.labels).map(([k, v]) => `${k}=${v}`).join(",")}`);
  }
  if (scope.container !== undefined) parts.push(`container ${scope.container}`);
  if (scope.command !== undefined) parts.push(`command ${scope.command}`);
  return parts.join(" ");
}
