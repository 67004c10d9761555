/**
 * An egress policy: the rules of `--allow`, `--deny`, `--expect` and
 * `--policy FILE`, in the order they were given. The first rule that
 * matches a connection decides; nothing is allowed unless a rule allows it.
 *
 * @module
 */

import { errorLine, UsageError } from "../../core/errors.ts";
import { parsePolicyFile } from "./policy_file.ts";
import { parseRule, type Rule, type RuleAction, ruleError } from "./rule.ts";

/** The rules, in order. */
export interface Policy {
  readonly rules: readonly Rule[];
}

/** One `--allow`/`--deny`/`--expect RULE`, or one `--policy FILE`, as given. */
export type PolicySource =
  | { kind: "rule"; action: RuleAction; text: string }
  | { kind: "file"; path: string };

/**
 * The policy of `sources`, in order (a file's rules where the file was
 * named). Throws a UsageError (exit status 2) at the first mistake, naming
 * the flag or the file and line, and the rule.
 *
 * @example
 * ```ts
 * import { loadPolicy } from "./policy.ts";
 * import { describeRule } from "./rule.ts";
 * import assert from "node:assert/strict";
 * const files: Record<string, string> = { "base.yaml": "rules:\n  - deny: 10.0.0.0/8\n" };
 * const policy = loadPolicy([
 *   { kind: "rule", action: "allow", text: "@loopback" },
 *   { kind: "file", path: "base.yaml" },
 *   { kind: "rule", action: "expect", text: "db.internal:5432" },
 * ], (path) => files[path]);
 * assert.deepEqual(policy.rules.map(describeRule), ["allow @loopback", "deny 10.0.0.0/8", "expect db.internal:5432"]);
 * assert.throws(() => loadPolicy([{ kind: "rule", action: "allow", text: "x:y" }]), /^UsageError: --allow "x:y": invalid ports "y"/);
 * ```
 */
export function loadPolicy(
  sources: readonly PolicySource[],
  readTextFile: (path: string) => string = Deno.readTextFileSync,
): Policy {
  const rules: Rule[] = [];
  for (const source of sources) {
    if (source.kind === "file") {
      rules.push(...parsePolicyFile(readPolicyText(source.path, readTextFile), source.path));
      continue;
    }
    try {
      rules.push(parseRule(source.action, source.text));
    } catch (error) {
      throw ruleError({ kind: "flag" }, source.action, source.text, (error as Error).message);
    }
  }
  return { rules };
}

/** The text of a policy file; a file that cannot be read is a usage error naming it. */
export function readPolicyText(
  path: string,
  readTextFile: (path: string) => string = Deno.readTextFileSync,
): string {
  try {
    return readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.IsADirectory
      ? "is a directory"
      : errorLine(error);
    throw new UsageError(`cannot read policy file ${path}: ${reason}`);
  }
}

/** The `expect` rules of the policy, in order. */
export function expectations(policy: Policy): Rule[] {
  return policy.rules.filter((rule) => rule.action === "expect");
}
