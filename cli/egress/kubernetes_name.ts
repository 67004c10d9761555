/**
 * Names of the policy objects `egress record` writes: valid Kubernetes
 * object names (RFC 1123 labels), unique within a set.
 *
 * @module
 */

/**
 * Makes `tcpgadget-egress-<slug>` names, the slug from the pods' `app`
 * label-like values or their first pod's name, made valid and unique.
 *
 * @example
 * ```ts
 * import { PolicyNames } from "./kubernetes_name.ts";
 * import assert from "node:assert/strict";
 * const names = new PolicyNames();
 * assert.equal(names.next({ "app.kubernetes.io/name": "Web_App" }, "web-0"), "tcpgadget-egress-web-app");
 * assert.equal(names.next({ app: "web-app" }, "web-1"), "tcpgadget-egress-web-app-2");
 * assert.equal(names.next({}, "../x"), "tcpgadget-egress-x");
 * ```
 */
export class PolicyNames {
  readonly #used = new Set<string>();

  next(labels: Readonly<Record<string, string>>, pod: string): string {
    const base = labels["app.kubernetes.io/name"] ?? labels.app ?? labels["k8s-app"] ?? pod;
    const slug = base.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "")
      .slice(0, 40).replace(/-+$/, "") || "pods";
    let name = `tcpgadget-egress-${slug}`;
    for (let n = 2; this.#used.has(name); n++) name = `tcpgadget-egress-${slug}-${n}`;
    this.#used.add(name);
    return name;
  }
}
