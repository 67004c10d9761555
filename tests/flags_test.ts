/** Command-line parsing and its errors, without privileges. */

import {
  parseSelector,
  parseTraceFlags,
  TRACE_FLAG_NAMES,
  traceArgs,
  type TraceFlags,
} from "../cli/flags.ts";
import { agentArgs } from "../cli/cluster_mode.ts";
import { kindsMask } from "../core/tracer.ts";
import { UsageError } from "../core/errors.ts";
import { assertEquals, assertThrows } from "./helpers/assert.ts";

Deno.test("flags: defaults", () => {
  const flags = parseTraceFlags([]);
  assertEquals(flags.output, "columns");
  assertEquals(flags.timeout, undefined);
  assertEquals(flags.hostRoot, "/");
  assertEquals([flags.connectOnly, flags.acceptOnly, flags.failureOnly], [false, false, false]);
});

Deno.test("flags: the seed's and Inspektor Gadget's flags", () => {
  const flags = parseTraceFlags([
    "-A",
    "-o",
    "custom-columns=pid,comm",
    "-t",
    "2.5",
    "--pid",
    "42",
    "--comm",
    "wget",
    "-p",
    "busybox",
    "-c",
    "main",
    "-l",
    "app=web,tier=front",
    "--node",
    "a,b",
    "--failure-only",
    "--cluster",
  ]);
  assertEquals(flags.allNamespaces, true);
  assertEquals(flags.output, "custom-columns=pid,comm");
  assertEquals(flags.timeout, 2.5);
  assertEquals(flags.pid, 42);
  assertEquals(flags.comm, "wget");
  assertEquals(flags.podname, "busybox");
  assertEquals(flags.containername, "main");
  assertEquals(flags.selector, { app: "web", tier: "front" });
  assertEquals(flags.nodes, ["a", "b"]);
  assertEquals(flags.failureOnly, true);
  assertEquals(parseTraceFlags(["--output=json", "--namespace=default"]).namespace, "default");
});

Deno.test("flags: errors are one clear line", () => {
  const cases: [string[], string | RegExp][] = [
    [["--bogus"], "unknown flag --bogus (see 'tcpgadget trace tcp --help')"],
    [["-x"], "unknown flag -x (see 'tcpgadget trace tcp --help')"],
    [["--pid", "abc"], '--pid must be a positive integer, got "abc"'],
    [["--pid", "0"], '--pid must be a positive integer, got "0"'],
    [["--timeout=-1"], '--timeout must be a positive number of seconds, got "-1"'],
    [
      ["--timeout", "-1"],
      "--timeout needs a value; for one that starts with '-', write --timeout=VALUE",
    ],
    [["-o"], "--output needs a value"],
    [["--timeout", "soon"], '--timeout must be a positive number of seconds, got "soon"'],
    [["-n", "a", "-A"], "--namespace and --all-namespaces cannot be used together"],
    [["-l", "app"], 'invalid selector "app": expected key=value'],
    [["--comm", ""], "--comm needs a command name"],
    [["extra"], "unexpected argument extra (see 'tcpgadget trace tcp --help')"],
    [["--pid"], "--pid needs a value"],
    [
      ["--cluster", "--max-parallel-uploads", "0"],
      '--max-parallel-uploads must be a positive integer, got "0"',
    ],
    [
      ["--cluster", "--max-parallel-uploads", "257"],
      '--max-parallel-uploads must be at most 256, got "257"',
    ],
  ];
  for (const [args, message] of cases) {
    const error = assertThrows(() => parseTraceFlags(args), UsageError, message);
    assertEquals(error.message.includes("\n"), false);
  }
});

Deno.test("flags: --agent-image leaves nothing to upload: --image and --max-parallel-uploads are refused", () => {
  const image = ["--cluster", "--agent-image", "registry.local/tcpgadget:1"];
  assertEquals(parseTraceFlags(image).agentImage, "registry.local/tcpgadget:1");
  for (const flag of ["--image=debian:12", "--max-parallel-uploads=2"]) {
    const name = flag.slice(0, flag.indexOf("="));
    assertThrows(
      () => parseTraceFlags([...image, flag]),
      UsageError,
      `${name} is for the upload; with --agent-image nothing is uploaded`,
    );
  }
  assertEquals(
    parseTraceFlags([...image, "--image-pull-secret", "a, b"]).imagePullSecrets,
    ["a", "b"],
  );
  assertThrows(
    () => parseTraceFlags(["--cluster", "--image-pull-secret", ","]),
    UsageError,
    "--image-pull-secret needs at least one secret name",
  );
  assertThrows(
    () => parseTraceFlags(["--cluster", "--agent-image="]),
    UsageError,
    "--agent-image needs a value",
  );
});

Deno.test("flags: a value given to a flag that takes none says so", () => {
  for (const flag of ["--host", "--connect-only", "--cluster", "--all-namespaces"]) {
    const error = assertThrows(() => parseTraceFlags([`${flag}=yes`]), UsageError);
    assertEquals(error.message, `${flag} takes no value (give ${flag} alone to turn it on)`);
  }
});

Deno.test("flags: cluster-only flags are refused in node mode, node-only ones in cluster mode", () => {
  const clusterOnly: [string[], string][] = [
    [["--node", "a"], "--node needs --cluster"],
    [["--agent-namespace", "x"], "--agent-namespace needs --cluster"],
    [["--image", "debian"], "--image needs --cluster"],
    [["--max-parallel-uploads", "2"], "--max-parallel-uploads needs --cluster"],
    [["--agent-image", "registry.local/tcpgadget:1"], "--agent-image needs --cluster"],
    [["--image-pull-secret", "regcred"], "--image-pull-secret needs --cluster"],
  ];
  for (const [args, message] of clusterOnly) {
    assertThrows(() => parseTraceFlags(args), UsageError, message);
    // With --cluster they are what cluster mode takes.
    parseTraceFlags([...args, "--cluster"]);
  }
  const nodeOnly: [string[], string][] = [
    [["--host-root", "/host"], "--host-root is for node mode; it cannot be used with --cluster"],
    [["--node-name", "a"], "--node-name is for node mode; it cannot be used with --cluster"],
    [["--in-cluster"], "--in-cluster is for node mode; it cannot be used with --cluster"],
    [
      ["--agent-pid-file", "/tmp/a.pid"],
      "--agent-pid-file is for node mode; it cannot be used with --cluster",
    ],
  ];
  for (const [args, message] of nodeOnly) {
    assertThrows(() => parseTraceFlags([...args, "--cluster"]), UsageError, message);
    parseTraceFlags(args);
  }
  // Both modes: the API's flags.
  parseTraceFlags(["--kubeconfig", "kc", "--context", "c"]);
  parseTraceFlags(["--kubeconfig", "kc", "--context", "c", "--cluster"]);
});

Deno.test("flags: --timeout up to 365 days, and no further", () => {
  assertEquals(parseTraceFlags(["--timeout", "2147484"]).timeout, 2147484);
  assertEquals(parseTraceFlags(["--timeout", "31536000"]).timeout, 31_536_000);
  for (const value of ["31536001", "1e30"]) {
    assertThrows(
      () => parseTraceFlags(["--timeout", value]),
      UsageError,
      `--timeout must be at most 31536000 seconds (365 days), got "${value}"`,
    );
  }
});

Deno.test("selector: equality forms", () => {
  assertEquals(parseSelector("a=1"), { a: "1" });
  assertEquals(parseSelector("a==1, b=2"), { a: "1", b: "2" });
  assertEquals(parseSelector("k8s.io/app=x"), { "k8s.io/app": "x" });
});

Deno.test("kinds: --connect-only, --accept-only, --failure-only and their union", () => {
  assertEquals(kindsMask({}), 0x1f);
  assertEquals(kindsMask({ connect: true }), 0x3);
  assertEquals(kindsMask({ accept: true }), 0x4);
  assertEquals(kindsMask({ failure: true }), 0x2);
  assertEquals(kindsMask({ accept: true, failure: true }), 0x6);
});

Deno.test("flags: every flag written by traceArgs parses back to the same flags", () => {
  // Every flag set to other than its default, values that look like flags
  // included; in two sets, as some flags exclude others.
  const node: TraceFlags = {
    output: "custom-columns=pid,comm",
    timeout: 2.5,
    pid: 42,
    comm: "-x",
    connectOnly: true,
    acceptOnly: true,
    failureOnly: true,
    namespace: "-n",
    allNamespaces: false,
    podname: "--pod",
    containername: "-c=1",
    selector: { app: "web", tier: "-front" },
    host: true,
    names: true,
    hostRoot: "/host",
    nodeName: "--node-a",
    cluster: false,
    kubeconfig: "-kc",
    context: "--ctx",
    inCluster: true,
    agentPidFile: "-agent.pid",
    help: true,
  };
  const { namespace: _, nodeName: __, agentPidFile: ___, ...common } = node;
  const cluster: TraceFlags = {
    ...common,
    allNamespaces: true,
    hostRoot: "/",
    inCluster: false,
    cluster: true,
    nodes: ["-a", "b"],
    agentNamespace: "-agents",
    image: "--image:1",
    imagePullSecrets: ["-regcred", "other"],
    maxParallelUploads: 3,
  };
  const { image: ____, maxParallelUploads: _____, ...imageless } = cluster;
  const agentImage: TraceFlags = { ...imageless, agentImage: "-registry/tcpgadget:1" };
  const seen = new Set<string>();
  for (const flags of [node, cluster, agentImage]) {
    const args = traceArgs(flags);
    for (const arg of args) seen.add(arg.replace(/^--/, "").replace(/=.*$/, ""));
    assertEquals(parseTraceFlags(args), flags, args.join(" "));
  }
  assertEquals([...seen].sort(), [...TRACE_FLAG_NAMES].sort(), "every flag was written");

  // What the agent gets in cluster mode parses back to the same filters.
  const agent = parseTraceFlags(agentArgs(cluster, "node-a", "-shop").slice(2));
  assertEquals(
    [
      agent.namespace,
      agent.podname,
      agent.containername,
      agent.comm,
      agent.pid,
      agent.host,
      agent.names,
    ],
    ["-shop", "--pod", "-c=1", "-x", 42, true, true],
  );
  assertEquals([agent.connectOnly, agent.acceptOnly, agent.failureOnly], [true, true, true]);
  assertEquals([agent.output, agent.hostRoot, agent.nodeName], ["json", "/host", "node-a"]);
});
