/** Flags of `egress run|watch|record`: parsing, what they hand to the tracer, and their errors. */

import { UsageError } from "../core/errors.ts";
import { EGRESS_HELP, parseEgressFlags } from "../cli/egress/egress_flags.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

Deno.test("egress flags: run keeps policy flags in order, takes everything after -- as COMMAND", () => {
  const flags = parseEgressFlags([
    "run",
    "--deny",
    "10.0.0.0/8:22",
    "--policy",
    "base.yaml",
    "--allow=@loopback",
    "--expect",
    "db:5432",
    "--junit",
    "junit.xml",
    "--summary",
    "summary.json",
    "--baseline",
    "recorded.yaml",
    "--allow-lost",
    "--",
    "npm",
    "--allow",
    "x",
    "--",
    "-o",
  ]);
  assertEquals(flags.command, "run");
  assertEquals(flags.policy, [
    { kind: "rule", action: "deny", text: "10.0.0.0/8:22" },
    { kind: "file", path: "base.yaml" },
    { kind: "rule", action: "allow", text: "@loopback" },
    { kind: "rule", action: "expect", text: "db:5432" },
  ]);
  assertEquals(flags.commandLine, ["npm", "--allow", "x", "--", "-o"]);
  assertEquals([flags.junit, flags.summary, flags.baseline], [
    "junit.xml",
    "summary.json",
    "recorded.yaml",
  ]);
  assertEquals([flags.allowLost, flags.output, flags.timeout], [true, undefined, undefined]);
  assertEquals(flags.trace.connectOnly, true);
  assertEquals(parseEgressFlags(["run", "-o", "json", "--", "true"]).output, "json");
});

Deno.test("egress flags: watch takes trace tcp's pod selection, and columns by default", () => {
  const flags = parseEgressFlags([
    "watch",
    "--allow",
    "*.svc.cluster.local",
    "-n",
    "shop",
    "-l",
    "app=web",
    "-c",
    "app",
    "--cluster",
    "--context",
    "ci",
    "--node",
    "a,b",
    "--agent-image",
    "registry.local/tcpgadget:0.1.0",
    "-t",
    "30",
  ]);
  assertEquals(flags.output, "columns");
  assertEquals(flags.timeout, 30);
  assertEquals(flags.commandLine, []);
  const t = flags.trace;
  assertEquals(
    [
      t.namespace,
      t.selector,
      t.containername,
      t.cluster,
      t.context,
      t.nodes,
      t.timeout,
      t.connectOnly,
      t.agentImage,
    ],
    [
      "shop",
      { app: "web" },
      "app",
      true,
      "ci",
      ["a", "b"],
      30,
      true,
      "registry.local/tcpgadget:0.1.0",
    ],
  );
  const driven = parseEgressFlags(["watch", "-A", "-o", "none", "--", "deno", "task", "e2e"]);
  assertEquals([driven.output, driven.commandLine, driven.trace.allNamespaces], [undefined, [
    "deno",
    "task",
    "e2e",
  ], true]);
});

Deno.test("egress flags: record writes -o FILE in a --format, per workload unless it records a command", () => {
  const command = parseEgressFlags(["record", "-o", "p.yaml", "--", "make", "test"]);
  assertEquals([command.recordFile, command.format, command.perWorkload], [
    "p.yaml",
    "policy",
    false,
  ]);
  const pods = parseEgressFlags([
    "record",
    "-o",
    "-",
    "--format",
    "cilium",
    "-n",
    "shop",
    "--",
    "sh",
  ]);
  assertEquals([pods.recordFile, pods.format, pods.perWorkload], ["-", "cilium", true]);
  const timed = parseEgressFlags([
    "record",
    "--output=np.yaml",
    "--format=networkpolicy",
    "--timeout",
    "5",
  ]);
  assertEquals([timed.format, timed.perWorkload, timed.timeout], ["networkpolicy", true, 5]);
});

Deno.test("egress flags: help", () => {
  for (const command of ["run", "watch", "record"] as const) {
    const flags = parseEgressFlags([command, "-h"]);
    assert(flags.help);
    assert(EGRESS_HELP[command].includes(`tcpgadget egress ${command}`));
  }
  assert(EGRESS_HELP.run.includes("[2001:db8::1]:443"));
});

Deno.test("egress flags: every mistake is one usage error (status 2)", () => {
  const cases: [string[], string][] = [
    [[], "egress needs a command: run, watch or record (see 'tcpgadget egress --help')"],
    [
      ["--allow", "x"],
      "egress needs a command: run, watch or record (see 'tcpgadget egress --help')",
    ],
    [["check"], 'unknown egress command "check": run, watch or record'],
    [
      ["run", "--allow", "x"],
      "egress run needs a command: tcpgadget egress run [flags] -- COMMAND [ARGS...]",
    ],
    [
      ["run", "--"],
      "egress run needs a command: tcpgadget egress run [flags] -- COMMAND [ARGS...]",
    ],
    [
      ["run", "npm", "ci"],
      'unexpected argument "npm": the command goes after -- (tcpgadget egress run [flags] -- COMMAND [ARGS...])',
    ],
    [
      ["run", "-n", "shop", "--", "x"],
      "unknown flag -n for egress run (see 'tcpgadget egress run --help')",
    ],
    [
      ["run", "--timeout", "5", "--", "x"],
      "unknown flag --timeout for egress run (see 'tcpgadget egress run --help')",
    ],
    [
      ["run", "--allow", "--", "x"],
      "--allow needs a value",
    ],
    [["run", "--allow"], "--allow needs a value"],
    [["run", "--allow", "", "--", "x"], "--allow needs a rule (DEST[:PORTS])"],
    [["run", "--policy", " ", "--", "x"], "--policy needs a file name"],
    [
      ["run", "-o", "yaml", "--", "x"],
      'unknown output format "yaml"; valid: columns, custom-columns=<list>, json, jsonpretty',
    ],
    [["run", "--junit", "", "--", "x"], "--junit needs a value"],
    [
      ["watch", "-A"],
      "egress watch needs --timeout SECONDS or -- COMMAND [ARGS...] (what ends it)",
    ],
    [
      ["watch", "-t", "5", "--", "x"],
      "egress watch: give --timeout or -- COMMAND, not both (the command's end ends it)",
    ],
    [["watch", "-t", "0"], '--timeout must be a positive number of seconds, got "0"'],
    [
      ["watch", "-n", "a", "-A", "-t", "1"],
      "--namespace and --all-namespaces cannot be used together",
    ],
    [["watch", "--image", "x", "-t", "1"], "--image needs --cluster"],
    [["watch", "--agent-image", "x", "-t", "1"], "--agent-image needs --cluster"],
    [
      ["watch", "--cluster", "--agent-image", "x", "--image", "y", "-t", "1"],
      "--image is for the upload; with --agent-image nothing is uploaded",
    ],
    [["watch", "-l", "app", "-t", "1"], 'invalid selector "app": expected key=value'],
    [
      ["watch", "--format", "cilium", "-t", "1"],
      "unknown flag --format for egress watch (see 'tcpgadget egress watch --help')",
    ],
    [["record", "--", "x"], "egress record needs -o FILE (the policy file to write; - for stdout)"],
    [
      ["record", "-o", "p.yaml"],
      "egress record needs --timeout SECONDS or -- COMMAND [ARGS...] (what ends it)",
    ],
    [
      ["record", "-o", "p.yaml", "--format", "calico", "-t", "1"],
      'unknown --format "calico"; valid: policy, networkpolicy, cilium',
    ],
    [
      ["record", "-o", "p.yaml", "--allow", "x", "-t", "1"],
      "unknown flag --allow for egress record (see 'tcpgadget egress record --help')",
    ],
  ];
  for (const [args, message] of cases) {
    const error = assertThrows(() => parseEgressFlags(args), UsageError, message);
    assertEquals((error as UsageError).exitCode, 2, args.join(" "));
  }
});
