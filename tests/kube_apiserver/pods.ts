/**
 * Pod defaulting and validation as the API server applies them on create
 * (the subset of pkg/apis/core/v1/defaults.go and validation.go that
 * matters to clients): defaults are visible in returned objects, and
 * invalid pods are refused with 422 and the real field error texts.
 *
 * @module
 */

// deno-lint-ignore-file no-explicit-any

import type { FieldError } from "./status.ts";
import type { KubeObject } from "./store.ts";

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const SUBDOMAIN_MESSAGE =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MESSAGE =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/** Whether `name` is a valid object name (DNS-1123 subdomain). */
export function isValidName(name: string): boolean {
  return name.length <= 253 && DNS1123_SUBDOMAIN.test(name);
}

/** Field errors of an object's metadata.name (for namespaced objects). */
export function validateObjectName(name: string | undefined): FieldError[] {
  if (!name) {
    return [{
      type: "FieldValueRequired",
      field: "metadata.name",
      detail: "name or generateName is required",
    }];
  }
  if (!isValidName(name)) {
    return [{
      type: "FieldValueInvalid",
      field: "metadata.name",
      value: name,
      detail: SUBDOMAIN_MESSAGE,
    }];
  }
  return [];
}

/** Characters of generated name suffixes (utilrand.String). */
const ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789";

/** `generateName` + 5 random characters, as the name generator does. */
export function generateName(prefix: string): string {
  const base = prefix.length > 58 ? prefix.slice(0, 58) : prefix;
  let suffix = "";
  const bytes = crypto.getRandomValues(new Uint8Array(5));
  for (const b of bytes) suffix += ALPHANUMS[b % ALPHANUMS.length];
  return base + suffix;
}

/** Validates a pod for create; returns the field errors (empty if valid). */
export function validatePod(pod: KubeObject): FieldError[] {
  const errors: FieldError[] = validateObjectName(pod.metadata?.name);
  const spec: any = pod.spec ?? {};
  const containers: any[] = Array.isArray(spec.containers) ? spec.containers : [];
  if (containers.length === 0) {
    errors.push({ type: "FieldValueRequired", field: "spec.containers" });
  }
  const seen = new Set<string>();
  const checkContainers = (list: any[], base: string) => {
    list.forEach((c, i) => {
      const at = `${base}[${i}]`;
      if (!c?.name) errors.push({ type: "FieldValueRequired", field: `${at}.name` });
      else if (!DNS1123_LABEL.test(c.name) || c.name.length > 63) {
        errors.push({
          type: "FieldValueInvalid",
          field: `${at}.name`,
          value: c.name,
          detail: LABEL_MESSAGE,
        });
      } else if (seen.has(c.name)) {
        errors.push({ type: "FieldValueDuplicate", field: `${at}.name`, value: c.name });
      } else seen.add(c.name);
      if (!c?.image) errors.push({ type: "FieldValueRequired", field: `${at}.image` });
    });
  };
  checkContainers(
    Array.isArray(spec.initContainers) ? spec.initContainers : [],
    "spec.initContainers",
  );
  checkContainers(containers, "spec.containers");
  if (
    spec.restartPolicy !== undefined &&
    !["Always", "OnFailure", "Never"].includes(spec.restartPolicy)
  ) {
    errors.push({
      type: "FieldValueNotSupported",
      field: "spec.restartPolicy",
      value: spec.restartPolicy,
      detail: `supported values: "Always", "OnFailure", "Never"`,
    });
  }
  if (spec.activeDeadlineSeconds !== undefined) {
    const v = spec.activeDeadlineSeconds;
    if (!Number.isInteger(v) || v < 1 || v > 2147483647) {
      errors.push({
        type: "FieldValueInvalid",
        field: "spec.activeDeadlineSeconds",
        value: v,
        detail: "must be between 1 and 2147483647, inclusive",
      });
    }
  }
  const volumeNames = new Set<string>();
  (Array.isArray(spec.volumes) ? spec.volumes : []).forEach((v: any, i: number) => {
    if (!v?.name) errors.push({ type: "FieldValueRequired", field: `spec.volumes[${i}].name` });
    else if (volumeNames.has(v.name)) {
      errors.push({ type: "FieldValueDuplicate", field: `spec.volumes[${i}].name`, value: v.name });
    } else volumeNames.add(v.name);
  });
  return errors;
}

function defaultPullPolicy(image: string): string {
  const lastPart = image.split("/").pop() ?? image;
  if (lastPart.includes("@")) return "IfNotPresent";
  const tag = lastPart.includes(":") ? lastPart.split(":").pop() : undefined;
  return tag === undefined || tag === "latest" ? "Always" : "IfNotPresent";
}

/** Applies the API server's defaults to a new pod (in place). */
export function applyPodDefaults(pod: KubeObject): void {
  const spec: any = (pod.spec ??= {});
  spec.restartPolicy ??= "Always";
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= "ClusterFirst";
  spec.securityContext ??= {};
  spec.schedulerName ??= "default-scheduler";
  spec.serviceAccountName ??= spec.serviceAccount ?? "default";
  spec.serviceAccount ??= spec.serviceAccountName;
  spec.enableServiceLinks ??= true;
  spec.priority ??= 0;
  spec.preemptionPolicy ??= "PreemptLowerPriority";
  spec.tolerations ??= [];
  // DefaultTolerationSeconds admission.
  const has = (key: string) =>
    spec.tolerations.some((t: any) => t.key === key && (t.effect ?? "NoExecute") === "NoExecute") ||
    spec.tolerations.some((t: any) => t.operator === "Exists" && !t.key);
  for (const key of ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]) {
    if (!has(key)) {
      spec.tolerations.push({
        key,
        operator: "Exists",
        effect: "NoExecute",
        tolerationSeconds: 300,
      });
    }
  }
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    c.terminationMessagePath ??= "/dev/termination-log";
    c.terminationMessagePolicy ??= "File";
    c.imagePullPolicy ??= defaultPullPolicy(String(c.image ?? ""));
    c.resources ??= {};
    for (const p of c.ports ?? []) p.protocol ??= "TCP";
  }
  for (const v of spec.volumes ?? []) {
    if (v.hostPath) v.hostPath.type ??= "";
    if (v.emptyDir === null) v.emptyDir = {};
  }
  pod.status = { phase: "Pending", qosClass: qosClass(pod) };
}

/** The pod's QoS class from its resources. */
export function qosClass(pod: KubeObject): string {
  const containers: any[] = pod.spec?.containers ?? [];
  let any = false;
  let guaranteed = containers.length > 0;
  for (const c of containers) {
    const req = c.resources?.requests ?? {};
    const lim = c.resources?.limits ?? {};
    if (Object.keys(req).length || Object.keys(lim).length) any = true;
    for (const r of ["cpu", "memory"]) {
      if (lim[r] === undefined || (req[r] !== undefined && req[r] !== lim[r])) guaranteed = false;
    }
  }
  if (!any) return "BestEffort";
  return guaranteed ? "Guaranteed" : "Burstable";
}
