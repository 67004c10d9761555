/** Policy files: the YAML format, its mistakes (file, line, rule; status 2), and writing it back. */

import { UsageError } from "../core/errors.ts";
import { loadPolicy } from "../cli/egress/policy.ts";
import { parsePolicyFile, policyFileText } from "../cli/egress/policy_file.ts";
import { describeRule } from "../cli/egress/rule.ts";
import { activeCharacter } from "./helpers/active_characters.ts";
import { assertEquals } from "./helpers/assert.ts";

const EXAMPLE = `# the README's example
version: 1
rules:
  - allow: "@loopback"
  - deny: "10.0.0.0/8:22"
  - allow: ["registry.npmjs.org:443", "*.github.com:443"]
    command: npm
  - allow: db.shop.svc.cluster.local:5432
    pod: shop/web-0
    container: app
  - allow: "[2001:db8::/32]:443"
    namespace: shop
    labels: {app: web, tier: ""}
  - expect: db.shop.svc.cluster.local:5432
`;

Deno.test("policy file: rules in order, lists sharing a scope, each with its line", () => {
  const rules = parsePolicyFile(EXAMPLE, "policy.yaml");
  assertEquals(rules.map(describeRule), [
    "allow @loopback",
    "deny 10.0.0.0/8:22",
    "allow registry.npmjs.org:443 (command npm)",
    "allow *.github.com:443 (command npm)",
    "allow db.shop.svc.cluster.local:5432 (pod shop/web-0 container app)",
    "allow [2001:db8::/32]:443 (namespace shop labels app=web,tier=)",
    "expect db.shop.svc.cluster.local:5432",
  ]);
  assertEquals(
    rules.map((r) => r.origin.kind === "file" ? r.origin.line : 0),
    [4, 5, 6, 6, 8, 11, 14],
  );
  assertEquals(rules[4].scope, { namespace: "shop", pod: "web-0", container: "app" });
});

Deno.test("policy file: its rules take the place of --policy among the flags", () => {
  const dir = Deno.makeTempDirSync({ prefix: "tcpgadget-egress-policy-" });
  try {
    Deno.writeTextFileSync(`${dir}/p.yaml`, "rules:\n  - deny: 10.0.0.66\n");
    const policy = loadPolicy([
      { kind: "rule", action: "allow", text: "10.0.0.0/8" },
      { kind: "file", path: `${dir}/p.yaml` },
      { kind: "rule", action: "deny", text: "*" },
    ]);
    assertEquals(policy.rules.map(describeRule), [
      "allow 10.0.0.0/8",
      "deny 10.0.0.66",
      "deny *",
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("policy file: every mistake is one line naming the file, the line and the rule", () => {
  const cases: [string, string][] = [
    [
      "rules:\n  - allow: a.example:99999\n",
      'p.yaml:2: rule "allow: a.example:99999": port 99999 is out of range (1-65535)',
    ],
    [
      "rules:\n  - allow: [a.example, 'b:x']\n",
      'p.yaml:2: rule "allow: b:x": invalid ports "x": expected a port, a range like 8000-8999, or *',
    ],
    [
      "rules:\n  - allow:\n      - a.example\n      - 10.0.0.1/8\n",
      'p.yaml:4: rule "allow: 10.0.0.1/8": "10.0.0.1/8" has bits set past the prefix: 10.0.0.0/8 is the block',
    ],
    [
      "rules:\n  - allow: *.github.com:443\n",
      'p.yaml:2: "*.github.com:443" is read by YAML as an alias: quote a rule that starts with * ("*.github.com:443")',
    ],
    [
      "rules:\n  - allow: @loopback\n",
      'p.yaml:2: invalid YAML: Plain value cannot start with reserved character @ (quote a rule that starts with @, * or [: "@loopback")',
    ],
    [
      "rules:\n  - allow: [::1]:443\n",
      'p.yaml:2: invalid YAML: Unexpected scalar at node end (quote a rule that starts with @, * or [: "@loopback")',
    ],
    ["rules:\n  - allow: 'a\n", "p.yaml:3: invalid YAML: Missing closing 'quote"],
    ["rules:\n  - allow: a\n    allow: b\n", "p.yaml:3: invalid YAML: Map keys must be unique"],
    [
      "rules:\n  - alow: a\n",
      'p.yaml:2: unknown key "alow" in a rule (expected allow, deny or expect, and namespace, pod, labels, container, command)',
    ],
    [
      "rules:\n  - allow: a\n    deny: b\n",
      "p.yaml:3: a rule has one of allow, deny, expect; this one has allow and deny",
    ],
    ["rules:\n  - command: curl\n", "p.yaml:2: a rule needs one of allow:, deny:, expect:"],
    ["rules:\n  - allow: []\n", "p.yaml:2: allow: lists no rule"],
    ["rules:\n  - allow: 443\n", 'p.yaml:2: allow: must be a string; quote it ("443")'],
    ["rules:\n  - allow:\n", "p.yaml:2: allow: needs a value"],
    [
      "rules:\n  - allow: a\n    pod: web-0\n",
      'p.yaml:3: pod: must be namespace/name, got "web-0"',
    ],
    [
      "rules:\n  - allow: a\n    pod: shop/web-0\n    namespace: shop\n",
      "p.yaml:4: pod: already names the namespace (namespace/name); drop namespace:",
    ],
    [
      "rules:\n  - allow: a\n    labels: app=web\n",
      "p.yaml:3: labels: must be a map (labels: {app: web})",
    ],
    [
      "rules:\n  - allow: a\n    labels: {version: 2}\n",
      'p.yaml:3: label version: must be a string; quote it ("2")',
    ],
    ["rules:\n  - allow\n", "p.yaml:2: each rule is a map: - allow: RULE (or deny:, expect:)"],
    ["rules: allow a\n", "p.yaml:1: rules: must be a list"],
    ["version: 2\nrules: []\n", "p.yaml:1: unsupported version: this tcpgadget reads version 1"],
    ["rulez: []\n", 'p.yaml:1: unknown key "rulez" (expected version, rules)'],
    ["version: 1\n", "p.yaml:1: no rules: list"],
    ["", "p.yaml:1: empty policy file: expected a map with rules:"],
    ["- allow: a\n", "p.yaml:1: expected a map with rules:, got something else"],
    [
      "a: 1\n---\nb: 2\n",
      "p.yaml:2: invalid YAML: Source contains multiple documents; please use YAML.parseAllDocuments()",
    ],
    [
      'rules:\n  - allow: "a\\e[2Jb"\n',
      "p.yaml:2: rule \"allow: a\\u001b[2Jb\": invalid destination \"a\\x1b[2Jb\": not a host name (letters, digits, '-', '_' and dots), a wildcard, an address or a CIDR block",
    ],
  ];
  for (const [text, expected] of cases) {
    let error: unknown;
    try {
      parsePolicyFile(text, "p.yaml");
    } catch (e) {
      error = e;
    }
    if (!(error instanceof UsageError)) {
      throw new Error(`${JSON.stringify(text)}: no UsageError (${error})`);
    }
    assertEquals(error.message, expected, JSON.stringify(text));
    assertEquals(error.exitCode, 2);
    assertEquals(error.message.includes("\n"), false);
  }
});

Deno.test("policy file: empty rules allow nothing; 'rules:' alone is an empty list", () => {
  assertEquals(parsePolicyFile("rules: []\n", "p.yaml"), []);
  assertEquals(parsePolicyFile("rules:\n", "p.yaml"), []);
});

Deno.test("policy file: what is written reads back as the same rules, whatever the strings hold", () => {
  const text = policyFileText([
    { action: "allow", rules: ["*.github.com:443", "@loopback", "[2001:db8::1]:443"], scope: {} },
    {
      action: "allow",
      rules: ["db:5432"],
      scope: { namespace: "shop", labels: { app: "web", "x/y": "a: b #c" } },
      comment: "pods seen: shop/web-0\nrules: [] # not a rule",
    },
    { action: "allow", rules: ["10.0.0.1:22"], scope: { command: "ev\u001bil\n- allow: *" } },
    {
      action: "deny",
      rules: ["10.0.0.0/8"],
      scope: { namespace: "shop", pod: "web-0", container: "c" },
    },
    { action: "expect", rules: ["db:5432"], scope: {} },
  ], "recorded by a test\nsecond line");
  const rules = parsePolicyFile(text, "p.yaml");
  assertEquals(rules.map(describeRule), [
    "allow *.github.com:443",
    "allow @loopback",
    "allow [2001:db8::1]:443",
    "allow db:5432 (namespace shop labels app=web,x/y=a: b #c)",
    "allow 10.0.0.1:22 (command ev\u001bil\n- allow: *)",
    "deny 10.0.0.0/8 (pod shop/web-0 container c)",
    "expect db:5432",
  ]);
  // Comments cannot start a line of YAML, nor carry a control character.
  const commentLines = text.split("\n").filter((line) => line.trimStart().startsWith("#"));
  assertEquals(commentLines, [
    "# recorded by a test",
    "# second line",
    "  # pods seen: shop/web-0",
    "  # rules: [] # not a rule",
  ]);
  assertEquals(activeCharacter(text), undefined);
});

Deno.test("policy file: the README's example reads as it says", () => {
  const readme = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
  const section = readme.slice(readme.indexOf("### Policy files"));
  const yaml = section.slice(section.indexOf("```yaml\n") + 8, section.indexOf("```\n", 10));
  assertEquals(parsePolicyFile(yaml, "README.md").map(describeRule), [
    "allow @loopback",
    "deny 10.0.0.0/8:22",
    "allow registry.npmjs.org:443 (command npm)",
    "allow *.github.com:443 (command npm)",
    "allow db.shop.svc.cluster.local:5432 (pod shop/web-0 container app)",
    "allow [2001:db8::/32]:443 (namespace shop labels app=web)",
    "expect db.shop.svc.cluster.local:5432",
  ]);
});
