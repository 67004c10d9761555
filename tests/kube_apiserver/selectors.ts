/**
 * Label and field selectors (`labelSelector=`, `fieldSelector=`) with the
 * grammar of k8s.io/apimachinery/pkg/labels and pkg/fields.
 *
 * @module
 */

import { badRequest } from "./status.ts";

/** A parsed selector: a predicate over an object. */
export type Selector = (object: KubeObjectLike) => boolean;

/** The minimal shape selectors read. */
export interface KubeObjectLike {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

type Requirement =
  | { op: "=" | "!="; key: string; value: string }
  | { op: "in" | "notin"; key: string; values: string[] }
  | { op: "exists" | "!"; key: string }
  | { op: "gt" | "lt"; key: string; value: number };

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function parseRequirement(text: string, source: string): Requirement {
  const fail = (why: string) => badRequest(`unable to parse requirement: ${why}`);
  let m = text.match(/^!\s*(\S+)$/);
  if (m) return { op: "!", key: checkKey(m[1], source) };
  m = text.match(/^(\S+?)\s+(in|notin)\s*\((.*)\)$/);
  if (m) {
    const values = m[3].split(",").map((v) => v.trim());
    for (const value of values) checkValue(value, source);
    return { op: m[2] as "in" | "notin", key: checkKey(m[1], source), values };
  }
  m = text.match(/^([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*)$/);
  if (m) {
    const key = checkKey(m[1], source);
    const value = m[3].trim();
    if (m[2] === "<" || m[2] === ">") {
      const n = Number(value);
      if (!Number.isInteger(n)) {
        throw fail(`for 'Gt', 'Lt' operators, the value must be an integer`);
      }
      return { op: m[2] === ">" ? "gt" : "lt", key, value: n };
    }
    checkValue(value, source);
    return { op: m[2] === "!=" ? "!=" : "=", key, value };
  }
  if (/^\S+$/.test(text)) return { op: "exists", key: checkKey(text, source) };
  throw fail(`found '${text}', expected: identifier`);
}

function checkKey(key: string, source: string): string {
  if (!LABEL_KEY.test(key) || key.length > 317) {
    throw badRequest(
      `unable to parse requirement: <nil>: Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (selector "${source}")`,
    );
  }
  return key;
}

function checkValue(value: string, source: string): string {
  if (!LABEL_VALUE.test(value) || value.length > 63) {
    throw badRequest(
      `unable to parse requirement: values[0][${value}]: Invalid value: "${value}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (selector "${source}")`,
    );
  }
  return value;
}

function matchRequirement(r: Requirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const value = labels[r.key];
  switch (r.op) {
    case "=":
      return has && value === r.value;
    case "!=":
      return !has || value !== r.value;
    case "in":
      return has && r.values.includes(value);
    case "notin":
      return !has || !r.values.includes(value);
    case "exists":
      return has;
    case "!":
      return !has;
    case "gt":
      return has && Number(value) > r.value;
    case "lt":
      return has && Number(value) < r.value;
  }
}

/** Parses a label selector; throws a 400 ApiError on bad syntax. */
export function parseLabelSelector(text: string | null | undefined): Selector {
  if (!text || text.trim() === "") return () => true;
  const requirements = splitTopLevel(text).map((part) => parseRequirement(part, text));
  return (object) => {
    const labels = object.metadata?.labels ?? {};
    return requirements.every((r) => matchRequirement(r, labels));
  };
}

/** The labels of a `matchLabels`-style map as a predicate over a label map. */
export function labelsMatch(
  selector: Record<string, string>,
  labels: Record<string, string> | undefined,
): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Field getters per resource: which fields a field selector may name. */
export type FieldGetters = Record<string, (object: KubeObjectLike) => string>;

const metaName = (o: KubeObjectLike) => o.metadata?.name ?? "";
const metaNamespace = (o: KubeObjectLike) => o.metadata?.namespace ?? "";

// deno-lint-ignore no-explicit-any
const path = (o: any, ...keys: string[]): unknown => keys.reduce((v, k) => v?.[k], o);
const str = (v: unknown): string => (v === undefined || v === null ? "" : String(v));

/** The fields each resource supports in field selectors (as the real registry). */
export const FIELD_GETTERS: Record<string, FieldGetters> = {
  pods: {
    "metadata.name": metaName,
    "metadata.namespace": metaNamespace,
    "spec.nodeName": (o) => str(path(o, "spec", "nodeName")),
    "spec.restartPolicy": (o) => str(path(o, "spec", "restartPolicy")),
    "spec.schedulerName": (o) => str(path(o, "spec", "schedulerName")),
    "spec.serviceAccountName": (o) => str(path(o, "spec", "serviceAccountName")),
    "spec.hostNetwork": (o) => String(path(o, "spec", "hostNetwork") === true),
    "status.phase": (o) => str(path(o, "status", "phase")),
    "status.podIP": (o) => str(path(o, "status", "podIP")),
    "status.nominatedNodeName": (o) => str(path(o, "status", "nominatedNodeName")),
  },
  nodes: {
    "metadata.name": metaName,
    "spec.unschedulable": (o) => String(path(o, "spec", "unschedulable") === true),
  },
  namespaces: {
    "metadata.name": metaName,
    "status.phase": (o) => str(path(o, "status", "phase")),
  },
  services: {
    "metadata.name": metaName,
    "metadata.namespace": metaNamespace,
  },
  events: {
    "metadata.name": metaName,
    "metadata.namespace": metaNamespace,
    "involvedObject.kind": (o) => str(path(o, "involvedObject", "kind")),
    "involvedObject.namespace": (o) => str(path(o, "involvedObject", "namespace")),
    "involvedObject.name": (o) => str(path(o, "involvedObject", "name")),
    "involvedObject.uid": (o) => str(path(o, "involvedObject", "uid")),
    "involvedObject.apiVersion": (o) => str(path(o, "involvedObject", "apiVersion")),
    "involvedObject.resourceVersion": (o) => str(path(o, "involvedObject", "resourceVersion")),
    "involvedObject.fieldPath": (o) => str(path(o, "involvedObject", "fieldPath")),
    "reason": (o) => str(path(o, "reason")),
    "reportingComponent": (o) => str(path(o, "reportingComponent")),
    "source": (o) => str(path(o, "source", "component")),
    "type": (o) => str(path(o, "type")),
  },
};

/**
 * Parses a field selector for a resource (`a=b,c!=d`); unknown fields
 * give 400 like the real server.
 */
export function parseFieldSelector(resource: string, text: string | null | undefined): Selector {
  if (!text || text.trim() === "") return () => true;
  const getters = FIELD_GETTERS[resource] ?? { "metadata.name": metaName };
  const terms = splitTopLevel(text).map((part) => {
    const m = part.match(/^([^=!]+?)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw badRequest(`invalid selector: '${text}'; can't understand '${part}'`);
    const field = m[1].trim();
    const getter = getters[field];
    if (!getter) {
      if (resource === "pods" || resource === "events" || resource === "nodes") {
        throw badRequest(`field label not supported: ${field}`);
      }
      throw badRequest(
        `"${field}" is not a known field selector: only "metadata.name", "metadata.namespace"`,
      );
    }
    return { getter, negate: m[2] === "!=", value: m[3].trim() };
  });
  return (object) => terms.every((t) => (t.getter(object) === t.value) !== t.negate);
}
