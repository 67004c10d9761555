/** Egress rules: RULE syntax, what each DEST matches, scopes, and the order of rules. */

import { UsageError } from "../core/errors.ts";
import { loadPolicy, type PolicySource } from "../cli/egress/policy.ts";
import { type Attempt, parseRule, ruleMatches, ruleText } from "../cli/egress/rule.ts";
import { judge } from "../cli/egress/verdict.ts";
import type { Workload } from "../cli/egress/workload.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const CURL: Workload = { node: "n", namespace: "", pod: "", container: "", command: "curl" };

function attempt(address: string, port: number, name?: string, workload = CURL): Attempt {
  const a: Attempt = { address, port, workload };
  if (name !== undefined) a.name = { name, source: "dns" };
  return a;
}

function matches(rule: string, a: Attempt, action: "allow" | "deny" = "allow"): boolean {
  return ruleMatches(parseRule(action, rule), a);
}

Deno.test("egress rule: every form reads and writes back in canonical form", () => {
  const cases: [string, string][] = [
    ["registry.npmjs.org", "registry.npmjs.org"],
    ["Registry.NPMJS.org.:443", "registry.npmjs.org:443"],
    ["*.github.com", "*.github.com"],
    ["*.github.com:443", "*.github.com:443"],
    ["db:5432", "db:5432"],
    ["10.0.0.1", "10.0.0.1"],
    ["10.0.0.1:80", "10.0.0.1:80"],
    ["10.0.0.0/8:8000-8999", "10.0.0.0/8:8000-8999"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["2001:db8::1", "2001:db8::1"],
    ["2001:0DB8:0:0::1", "2001:db8::1"],
    ["2001:db8::/32", "2001:db8::/32"],
    ["[2001:db8::1]:443", "[2001:db8::1]:443"],
    ["[2001:db8::/32]:443", "[2001:db8::/32]:443"],
    ["[2001:db8::1]", "2001:db8::1"],
    ["[2001:db8::1]:*", "2001:db8::1"],
    ["[10.0.0.1]:22", "10.0.0.1:22"],
    ["::1", "::1"],
    ["::ffff:10.0.0.1", "10.0.0.1"],
    ["[::ffff:10.0.0.0/104]:53", "10.0.0.0/8:53"],
    ["@loopback", "@loopback"],
    ["@private:443", "@private:443"],
    ["@link-local:80-81", "@link-local:80-81"],
    ["*", "*"],
    ["*:443", "*:443"],
    ["*:*", "*"],
    ["_sip._tcp.example.com:5060", "_sip._tcp.example.com:5060"],
  ];
  for (const [text, canonical] of cases) {
    const rule = parseRule("allow", text);
    assertEquals(ruleText(rule), canonical, text);
    assertEquals(ruleText(parseRule("allow", canonical)), canonical, `${text} (again)`);
  }
});

Deno.test("egress rule: mistakes are one line saying what is wrong", () => {
  const cases: [string, RegExp][] = [
    ["", /empty destination/],
    ["x:", /invalid ports ""/],
    ["x:0", /port 0 is out of range \(1-65535\)/],
    ["x:65536", /port 65536 is out of range/],
    ["x:443-80", /80 is below 443/],
    ["x:https", /invalid ports "https"/],
    ["x:80,443", /invalid ports "80,443"/],
    ["10.0.0", /"10.0.0" is not an IPv4 or IPv6 address/],
    ["10.0.0.256", /not an IPv4 or IPv6 address/],
    ["0x7f.0.0.1", /not an IPv4 or IPv6 address/],
    ["10.0.0.0/33", /invalid prefix length "\/33" \(0-32\)/],
    ["10.0.0.1/8", /bits set past the prefix: 10.0.0.0\/8 is the block/],
    ["2001:db8::1/129", /invalid prefix length "\/129" \(0-128\)/],
    ["fe80::1%eth0", /not an IPv4 or IPv6 address/],
    ["[2001:db8::1", /missing "\]"/],
    ["[2001:db8::1]443", /expected ":PORTS" after "\]"/],
    ["[example.com]:443", /brackets hold only an IP address or CIDR block/],
    ["api.*.com", /a wildcard is only allowed as the whole first label/],
    ["*github.com", /a wildcard is only allowed as the whole first label/],
    ["*.*.com", /a wildcard is only allowed as the whole first label/],
    ["exa mple.com", /not a host name/],
    ["-bad.example", /not a host name/],
    ["@lan", /unknown preset @lan \(presets: @loopback, @private, @link-local\)/],
    ["a/b", /not an IPv4 or IPv6 address/],
  ];
  for (const [text, pattern] of cases) {
    let message = "";
    try {
      parseRule("allow", text);
    } catch (error) {
      message = (error as Error).message;
    }
    assert(pattern.test(message), `${JSON.stringify(text)}: got ${JSON.stringify(message)}`);
  }
});

Deno.test("egress rule: a flag's mistake names the flag and the rule, exit status 2", () => {
  const error = assertThrows(
    () => loadPolicy([{ kind: "rule", action: "deny", text: "10.0.0.1/8:22" }]),
    UsageError,
    '--deny "10.0.0.1/8:22": "10.0.0.1/8" has bits set past the prefix: 10.0.0.0/8 is the block',
  );
  assertEquals((error as UsageError).exitCode, 2);
  assertThrows(
    () => loadPolicy([{ kind: "file", path: "/nonexistent/tcpgadget-policy.yaml" }]),
    UsageError,
    "cannot read policy file /nonexistent/tcpgadget-policy.yaml: no such file",
  );
});

Deno.test("egress rule: a wildcard matches one label or more under its suffix, never the apex", () => {
  const rule = "*.github.com";
  assert(matches(rule, attempt("140.82.112.5", 443, "api.github.com")));
  assert(matches(rule, attempt("140.82.112.5", 443, "codeload.eu.github.com")));
  assert(!matches(rule, attempt("140.82.112.5", 443, "github.com")));
  assert(!matches(rule, attempt("140.82.112.5", 443, "evilgithub.com")));
  assert(!matches(rule, attempt("140.82.112.5", 443, "github.com.evil.net")));
  assert(!matches(rule, attempt("140.82.112.5", 443)), "no name: a name rule cannot match");
});

Deno.test("egress rule: host names match exactly, case-folded when read", () => {
  assert(matches("Registry.NPMjs.org", attempt("104.16.0.35", 443, "registry.npmjs.org")));
  assert(!matches("registry.npmjs.org", attempt("104.16.0.35", 443, "npmjs.org")));
  assert(!matches("registry.npmjs.org", attempt("104.16.0.35", 443, "x.registry.npmjs.org")));
  assert(!matches("registry.npmjs.org", attempt("104.16.0.35", 443)));
});

Deno.test("egress rule: address rules look at the address only, named or not", () => {
  assert(matches("104.16.0.0/12:443", attempt("104.16.0.35", 443, "registry.npmjs.org")));
  assert(matches("104.16.0.0/12:443", attempt("104.16.0.35", 443)));
  assert(!matches("104.16.0.0/12:443", attempt("104.32.0.35", 443)));
  assert(!matches("104.16.0.0/12:443", attempt("104.16.0.35", 80)));
  assert(matches("2001:db8::/32", attempt("2001:db8:1::5", 9)));
  assert(!matches("2001:db8::/32", attempt("2001:db9::5", 9)));
  assert(!matches("0.0.0.0/0", attempt("2001:db8::5", 9)), "an IPv4 block never holds IPv6");
  assert(!matches("::/0", attempt("10.0.0.1", 9)), "an IPv6 block never holds IPv4");
  assert(matches("::/0", attempt("::1", 9)));
  assert(matches("[2001:db8::/32]:443", attempt("2001:db8::1", 443)));
  assert(!matches("[2001:db8::/32]:443", attempt("2001:db8::1", 444)));
  assert(matches("*", attempt("2001:db8::1", 1)));
  assert(matches("*:443", attempt("10.0.0.1", 443, "anything.example")));
});

Deno.test("egress rule: presets are the blocks README.md lists", () => {
  const cases: [string, string, boolean][] = [
    ["@loopback", "127.0.0.1", true],
    ["@loopback", "127.255.1.2", true],
    ["@loopback", "::1", true],
    ["@loopback", "::2", false],
    ["@loopback", "128.0.0.1", false],
    ["@private", "10.1.2.3", true],
    ["@private", "172.16.0.1", true],
    ["@private", "172.31.255.255", true],
    ["@private", "172.32.0.1", false],
    ["@private", "192.168.1.1", true],
    ["@private", "fd12::1", true],
    ["@private", "8.8.8.8", false],
    ["@link-local", "169.254.169.254", true],
    ["@link-local", "fe80::1", true],
    ["@link-local", "10.0.0.1", false],
  ];
  for (const [preset, address, expected] of cases) {
    assertEquals(matches(preset, attempt(address, 80)), expected, `${preset} ${address}`);
  }
});

Deno.test("egress rule: a deny matches the CNAMEs of a name too, an allow only the name asked for", () => {
  const aliased = attempt("198.51.100.7", 443, "downloads.example.org");
  aliased.name!.chain = ["downloads.example.org", "downloads.example.org.cdn.evil.net"];
  assert(matches("*.evil.net", aliased, "deny"));
  assert(!matches("*.evil.net", aliased, "allow"));
  assert(matches("downloads.example.org", aliased, "allow"));
});

Deno.test("egress rule: scopes by pod, labels, container and command", () => {
  const web: Workload = {
    node: "n",
    namespace: "shop",
    pod: "web-0",
    container: "nginx",
    command: "nginx",
    labels: { app: "web" },
  };
  const rule = (scope: object) => ({ ...parseRule("allow", "db:5432"), scope });
  const a = attempt("10.0.0.5", 5432, "db", web);
  assert(ruleMatches(rule({ namespace: "shop", pod: "web-0" }), a));
  assert(!ruleMatches(rule({ namespace: "cart", pod: "web-0" }), a));
  assert(ruleMatches(rule({ namespace: "shop", labels: { app: "web" } }), a));
  assert(!ruleMatches(rule({ labels: { app: "web", tier: "front" } }), a));
  assert(ruleMatches(rule({ container: "nginx" }), a));
  assert(!ruleMatches(rule({ container: "sidecar" }), a));
  assert(ruleMatches(rule({ command: "nginx" }), a));
  assert(!ruleMatches(rule({ command: "curl" }), a));
  assert(
    !ruleMatches(rule({ namespace: "shop" }), attempt("10.0.0.5", 5432, "db")),
    "host process",
  );
  // The kernel keeps 15 bytes of a command name: a rule's longer name matches them.
  const long = { ...CURL, command: "kube-controller" };
  assert(
    ruleMatches(
      rule({ command: "kube-controller-manager" }),
      attempt("10.0.0.5", 5432, "db", long),
    ),
  );
});

Deno.test("egress rule: the first matching rule decides; deny carves out of allow; nothing is allowed by default", () => {
  const sources: PolicySource[] = [
    { kind: "rule", action: "deny", text: "10.0.0.66" },
    { kind: "rule", action: "allow", text: "10.0.0.0/8" },
    { kind: "rule", action: "deny", text: "10.0.0.7" }, // shadowed by the allow above
  ];
  const policy = loadPolicy(sources);
  assertEquals(judge(policy, attempt("10.0.0.66", 80)), {
    allowed: false,
    index: 0,
    rule: policy.rules[0],
  });
  assertEquals(judge(policy, attempt("10.0.0.7", 80)).index, 1);
  assertEquals(judge(policy, attempt("11.0.0.7", 80)), { allowed: false });
  assertEquals(judge(loadPolicy([]), attempt("127.0.0.1", 80)), { allowed: false });
  // An expect rule allows, at its place in the order.
  const expecting = loadPolicy([{ kind: "rule", action: "expect", text: "db:5432" }]);
  assertEquals(judge(expecting, attempt("10.0.0.5", 5432, "db")).allowed, true);
});
