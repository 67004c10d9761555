/**
 * Policy files: the YAML that `--policy` and `--baseline` read and
 * `egress record` writes (parsed and written with the `yaml` package).
 *
 * ```yaml
 * version: 1
 * rules:                      # in order: the first rule that matches decides
 *   - allow: "@loopback"
 *   - deny: "10.0.0.0/8"
 *   - allow: ["registry.npmjs.org:443", "*.github.com:443"]
 *     command: npm            # scope: only for these processes
 *   - allow: "db.shop.svc.cluster.local:5432"
 *     pod: shop/web-0         # or namespace: shop, labels: {app: web}; container: app
 *   - expect: "db.shop.svc.cluster.local:5432"
 * ```
 *
 * A rule is a map with one of `allow`, `deny`, `expect` (a RULE, or a
 * list of RULEs sharing the scope) and scope keys `namespace`,
 * `pod` (`namespace/name`), `labels`, `container`, `command`.
 *
 * @module
 */

import {
  Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  type YAMLMap,
} from "yaml";
import { UsageError } from "../../core/errors.ts";
import { parseRule, type Rule, type RuleAction, ruleError, type RuleOrigin } from "./rule.ts";
import type { RuleScope } from "./rule_scope.ts";
import { printable } from "../../core/printable.ts";

const ACTIONS: readonly RuleAction[] = ["allow", "deny", "expect"];
const SCOPE_KEYS = ["namespace", "pod", "labels", "container", "command"] as const;

/**
 * Reads the rules of policy file `file` (its text); throws a UsageError
 * (exit status 2) naming the file, the line and the rule at the first
 * mistake.
 *
 * @example
 * ```ts
 * import { parsePolicyFile } from "./policy_file.ts";
 * import { describeRule } from "./rule.ts";
 * import assert from "node:assert/strict";
 * const rules = parsePolicyFile('rules:\n  - allow: ["a.example:443", "b.example"]\n    command: curl\n', "p.yaml");
 * assert.deepEqual(rules.map(describeRule), ["allow a.example:443 (command curl)", "allow b.example (command curl)"]);
 * assert.deepEqual(rules[1].origin, { kind: "file", file: "p.yaml", line: 2 });
 * assert.throws(() => parsePolicyFile("rules:\n  - allow: a:0\n", "p.yaml"), /^UsageError: p.yaml:2: rule "allow: a:0": port 0/);
 * ```
 */
export function parsePolicyFile(text: string, file: string): Rule[] {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const lineOf = (node: Node | null | undefined) =>
    node?.range ? lines.linePos(node.range[0]).line : 1;
  const fail = (node: Node | null | undefined, message: string) =>
    new UsageError(`${file}:${lineOf(node)}: ${message}`);
  if (doc.errors.length > 0) {
    const error = doc.errors[0];
    const message = printable(error.message.split(" at line ")[0].split("\n")[0]);
    const hint = ["BAD_SCALAR_START", "UNEXPECTED_TOKEN"].includes(error.code)
      ? ` (quote a rule that starts with @, * or [: "@loopback")`
      : "";
    throw new UsageError(
      `${file}:${error.linePos?.[0].line ?? 1}: invalid YAML: ${message}${hint}`,
    );
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) {
    throw fail(root, "empty policy file: expected a map with rules:");
  }
  if (!isMap(root)) throw fail(root, "expected a map with rules:, got something else");
  let rulesNode: Node | null = null;
  for (const pair of root.items) {
    const key = keyOf(pair.key);
    const value = pair.value as Node | null;
    if (key === "version") {
      if (!isScalar(value) || value.value !== 1) {
        throw fail(
          value ?? (pair.key as Node),
          "unsupported version: this tcpgadget reads version 1",
        );
      }
    } else if (key === "rules") {
      rulesNode = value;
    } else {
      throw fail(pair.key as Node, `unknown key "${key}" (expected version, rules)`);
    }
  }
  if (rulesNode === null || (isScalar(rulesNode) && rulesNode.value === null)) {
    if (rulesNode === null && !root.has("rules")) throw fail(root, "no rules: list");
    return [];
  }
  if (!isSeq(rulesNode)) throw fail(rulesNode, "rules: must be a list");
  const rules: Rule[] = [];
  for (const item of rulesNode.items as (Node | null)[]) {
    if (isAlias(item)) throw fail(item, aliasMessage(item.source));
    if (!isMap(item)) throw fail(item, "each rule is a map: - allow: RULE (or deny:, expect:)");
    rules.push(...readRuleEntry(item, file, lineOf, fail));
  }
  return rules;
}

function readRuleEntry(
  entry: YAMLMap,
  file: string,
  lineOf: (node: Node | null | undefined) => number,
  fail: (node: Node | null | undefined, message: string) => UsageError,
): Rule[] {
  let action: RuleAction | undefined;
  let actionNode: Node | null = null;
  const scope: RuleScope = {};
  let podNode: Node | null = null;
  let namespaceNode: Node | null = null;
  for (const pair of entry.items) {
    const key = keyOf(pair.key);
    const value = pair.value as Node | null;
    if ((ACTIONS as string[]).includes(key)) {
      if (action !== undefined) {
        throw fail(
          pair.key as Node,
          `a rule has one of allow, deny, expect; this one has ${action} and ${key}`,
        );
      }
      action = key as RuleAction;
      actionNode = value;
    } else if (key === "labels") {
      if (!isMap(value)) {
        throw fail(value ?? (pair.key as Node), "labels: must be a map (labels: {app: web})");
      }
      const labels: Record<string, string> = {};
      for (const label of value.items) {
        const name = keyOf(label.key);
        labels[name] = stringValue(label.value as Node | null, `label ${name}`, fail, true);
      }
      scope.labels = labels;
    } else if ((SCOPE_KEYS as readonly string[]).includes(key)) {
      const text = stringValue(value, key, fail);
      if (key === "pod") {
        podNode = value;
        const parts = text.split("/");
        if (parts.length !== 2 || !parts[0] || !parts[1]) {
          throw fail(value, `pod: must be namespace/name, got "${printable(text)}"`);
        }
        [scope.namespace, scope.pod] = parts;
      } else if (key === "namespace") {
        namespaceNode = value;
      } else {
        scope[key as "container" | "command"] = text;
      }
    } else {
      throw fail(
        pair.key as Node,
        `unknown key "${
          printable(key)
        }" in a rule (expected allow, deny or expect, and namespace, pod, labels, container, command)`,
      );
    }
  }
  if (namespaceNode !== null) {
    if (podNode !== null) {
      throw fail(
        namespaceNode,
        "pod: already names the namespace (namespace/name); drop namespace:",
      );
    }
    scope.namespace = stringValue(namespaceNode, "namespace", fail);
  }
  if (action === undefined) throw fail(entry, "a rule needs one of allow:, deny:, expect:");
  const texts: Node[] = isSeq(actionNode) ? actionNode.items as Node[] : [actionNode as Node];
  if (texts.length === 0) throw fail(actionNode ?? entry, `${action}: lists no rule`);
  return texts.map((node) => {
    if (isAlias(node)) throw fail(node, aliasMessage(node.source));
    const text = stringValue(node, action, fail);
    const origin: RuleOrigin = { kind: "file", file, line: lineOf(node ?? entry) };
    try {
      return parseRule(action, text, scope, origin);
    } catch (error) {
      throw ruleError(origin, action, text, (error as Error).message);
    }
  });
}

function keyOf(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

function stringValue(
  node: Node | null | undefined,
  what: string,
  fail: (node: Node | null | undefined, message: string) => UsageError,
  emptyAllowed = false,
): string {
  if (isAlias(node)) throw fail(node, aliasMessage(node.source));
  if (!isScalar(node) || node.value === null || (node.value === "" && !emptyAllowed)) {
    throw fail(node, `${what}: needs a value`);
  }
  if (typeof node.value !== "string") {
    throw fail(node, `${what}: must be a string; quote it ("${node.source ?? node.value}")`);
  }
  return node.value;
}

function aliasMessage(source: string): string {
  return `"*${printable(source)}" is read by YAML as an alias: quote a rule that starts with * ("*${
    printable(source)
  }")`;
}

/** Rules of one action and scope, written as one entry of a policy file. */
export interface PolicyFileEntry {
  action: RuleAction;
  /** `DEST[:PORTS]` of each rule, in order. */
  rules: string[];
  scope: RuleScope;
  /** A comment written above the entry (escaped here). */
  comment?: string;
}

/**
 * The text of a policy file holding `entries`, in order, with `header` as
 * a comment on top. Strings are double-quoted (every RULE reads back as
 * written, even those starting with `*`, `@` or `[`); comments escaped.
 *
 * @example
 * ```ts
 * import { parsePolicyFile, policyFileText } from "./policy_file.ts";
 * import { describeRule } from "./rule.ts";
 * import assert from "node:assert/strict";
 * const text = policyFileText([
 *   { action: "allow", rules: ["*.github.com:443", "[2001:db8::1]:443"], scope: { namespace: "ci", pod: "runner" } },
 * ], "recorded");
 * assert.deepEqual(parsePolicyFile(text, "p.yaml").map(describeRule), [
 *   "allow *.github.com:443 (pod ci/runner)",
 *   "allow [2001:db8::1]:443 (pod ci/runner)",
 * ]);
 * ```
 */
export function policyFileText(entries: readonly PolicyFileEntry[], header?: string): string {
  const doc = new Document({
    version: 1,
    rules: entries.map((entry) => {
      const item: Record<string, unknown> = {
        [entry.action]: entry.rules.length === 1 ? entry.rules[0] : entry.rules,
      };
      const scope = entry.scope;
      if (scope.pod !== undefined) item.pod = `${scope.namespace}/${scope.pod}`;
      else if (scope.namespace !== undefined) item.namespace = scope.namespace;
      if (scope.labels !== undefined) item.labels = { ...scope.labels };
      if (scope.container !== undefined) item.container = scope.container;
      if (scope.command !== undefined) item.command = scope.command;
      return item;
    }),
  });
  if (header !== undefined) doc.commentBefore = commentText(header);
  const items = (doc.get("rules") as { items: { commentBefore?: string }[] }).items;
  entries.forEach((entry, i) => {
    if (entry.comment !== undefined) items[i].commentBefore = commentText(entry.comment);
  });
  return doc.toString({ defaultStringType: "QUOTE_DOUBLE", defaultKeyType: "PLAIN", lineWidth: 0 });
}

function commentText(text: string): string {
  return text.split("\n").map((line) => ` ${printable(line)}`).join("\n");
}
