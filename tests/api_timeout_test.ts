/**
 * A Kubernetes API server that does not answer ends every command with one
 * line naming it, within a bound, and leaves nothing behind: servers on
 * loopback that accept TCP, or complete TLS, and never answer (node mode
 * with --kubeconfig, cluster mode, `tcpgadget cleanup`), and the test API
 * server holding one kind of request unanswered (the first list or the
 * watch of the pods, creating the agent pods, a pod's status, the exec
 * upgrade, the deletions). A server that answers with errors is waited for
 * as before: watches are retried and warned once.
 *
 * The bound is 10 s here (TCPGADGET_API_TIMEOUT): every request the test
 * API server does answer must come within it, and a fresh process's first
 * request took 7 s and 19 s here once in a while (2 s and 5 s bounds made
 * these tests flaky). The tests check that every run ends well within a
 * loose 60 s (one run waits twice: for a watch, then for deletions), as a
 * bug check, not a benchmark.
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { assertNothingLeft, clusterSkipReason, FakeCluster } from "./helpers/cluster.ts";
import { hasCommand, needsBpf } from "./helpers/privileges.ts";
import { type Silence, SilentServer } from "./helpers/silent_server.ts";
import type { RequestFault } from "./kube_apiserver/mod.ts";

const FILE = "api_timeout_test.ts";
const ENV = { TCPGADGET_API_TIMEOUT: "10" };
/** How long a run may take before the test calls it stuck. */
const LOOSE_MS = 60_000;

const NO_OPENSSL = hasCommand("openssl", "version") ? undefined : "openssl not installed";
if (NO_OPENSSL) console.warn(`SKIPPED (${FILE}, TLS and test API server): ${NO_OPENSSL}`);
const CLUSTER_SKIP = clusterSkipReason();
if (CLUSTER_SKIP) console.warn(`SKIPPED (${FILE}, cluster mode): ${CLUSTER_SKIP}`);

/**
 * Runs tcpgadget with the test's bound, and a temporary directory of its
 * own that must be empty when it ends; fails the test if it is still
 * running after 60 s.
 */
async function run(
  args: string[],
  env: Record<string, string> = ENV,
): Promise<{ code: number; stdout: string; stderr: string[] }> {
  const tmp = await Deno.makeTempDir({ prefix: "tgtest-tmp-" });
  try {
    const child = CliRun.start(args, { env: { ...env, TMPDIR: tmp } });
    const { code } = await child.finish(LOOSE_MS);
    const left = [...Deno.readDirSync(tmp)].map((entry) => entry.name);
    assertEquals(left, [], `temporary files left by ${args.join(" ")}`);
    return {
      code,
      stdout: child.stdoutLines.join("\n"),
      stderr: child.stderr.split("\n").filter(Boolean),
    };
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The line for a server that did not answer. */
function noAnswer(url: string, kubeconfig: string, context: string): string {
  return `tcpgadget: cannot connect to the Kubernetes API server at ${url} (context "${context}" of kubeconfig ${kubeconfig}): no answer within 10 s`;
}

for (const silence of ["tcp", "tls"] as Silence[]) {
  const what = silence === "tcp" ? "accepts TCP" : "completes TLS";
  Deno.test({
    name:
      `api: a server that ${what} and never answers: node mode, cluster mode and cleanup end with one line`,
    ignore: silence === "tls" && NO_OPENSSL !== undefined,
    async fn() {
      await using server = await SilentServer.start(silence);
      const expected = noAnswer(server.url, server.kubeconfig, "silent");
      const kubeconfig = ["--kubeconfig", server.kubeconfig];
      // Side by side: each run is its own process and connection.
      const runs = [
        ["trace", "tcp", ...kubeconfig, "-o", "json"],
        ["trace", "tcp", ...kubeconfig, "--timeout", "60"],
        ["trace", "tcp", "--cluster", ...kubeconfig],
        ["cleanup", ...kubeconfig],
      ];
      const results = await Promise.all(runs.map((args) => run(args)));
      for (const [i, result] of results.entries()) {
        assertEquals(result, { code: 1, stdout: "", stderr: [expected] }, runs[i].join(" "));
      }
      // Every run reached the server (its accept loop may lag on a loaded machine).
      for (let i = 0; i < 50 && server.accepted < 4; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert(server.accepted >= 4, `connections accepted: ${server.accepted}`);
      // A bound that is not one is refused before anything is asked.
      const refused = await run(["cleanup", ...kubeconfig], { TCPGADGET_API_TIMEOUT: "soon" });
      assertEquals(refused, {
        code: 2,
        stdout: "",
        stderr: [
          'tcpgadget: TCPGADGET_API_TIMEOUT must be a number of seconds above 0 and at most 86400, not "soon"',
        ],
      });
    },
  });
}

/** Deno.test of a test against the test API server. */
function apiTest(name: string, ignore: boolean, fn: () => Promise<void>): void {
  // The server's clients keep connections alive between requests.
  Deno.test({ name, ignore, sanitizeOps: false, sanitizeResources: false, fn });
}

apiTest(
  "api: node mode: a first list or a watch the server never answers ends the run with one line",
  NO_OPENSSL !== undefined,
  async () => {
    await using cluster = await FakeCluster.start({ nodes: [], kubeletFiles: false });
    const expected = noAnswer(cluster.api.url, cluster.kubeconfig, "fake");
    const faults: RequestFault[] = [
      { verb: "list", resource: "pods", code: "no answer" },
      // The list answered, the watch not: client-node's start() awaits it.
      { verb: "watch", resource: "pods", code: "no answer" },
    ];
    for (const fault of faults) {
      const undo = cluster.api.failRequests({ ...fault, times: Infinity });
      try {
        const result = await run([
          "trace",
          "tcp",
          "--kubeconfig",
          cluster.kubeconfig,
          "-o",
          "json",
        ]);
        assertEquals(result, { code: 1, stdout: "", stderr: [expected] }, JSON.stringify(fault));
      } finally {
        undo();
      }
      const { code: _, ...match } = fault;
      assert(cluster.api.countRequests(match) > 0, `no request held: ${JSON.stringify(fault)}`);
    }
    // Nothing is left open at the server: every held request was given up.
    for (let i = 0; i < 20 && cluster.api.activeWatches > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assertEquals(cluster.api.activeWatches, 0);
  },
);

apiTest(
  "api: node mode: a server that answers the first list with an error is retried, warned once",
  needsBpf(FILE) || NO_OPENSSL !== undefined || CLUSTER_SKIP !== undefined,
  async () => {
    await using cluster = await FakeCluster.start({ nodes: [{ name: "node-a" }] });
    const pod = await cluster.workload("default", "shop-0");
    const podIp = pod.status!.podIP!;
    cluster.api.failRequests({ verb: "list", resource: "pods", code: 500, times: 2 });
    const server = await Actor.start("tg-api-server");
    const client = await Actor.start("tg-api-client");
    try {
      const { sock, port } = await server.do("listen 0.0.0.0");
      const child = CliRun.start(
        ["trace", "tcp", "--kubeconfig", cluster.kubeconfig, "-o", "json", "--connect-only"],
        { env: ENV },
      );
      await child.ready();
      // Retried after 1 s, then 2 s: the pods are known once a list succeeds.
      await child.waitFor(
        () => cluster.api.countRequests({ verb: "watch", resource: "pods" }) > 0,
        "the pods to be watched",
      );
      assertEquals((await client.do(`connect ${podIp} ${port}`)).error, null);
      await server.do(`accept ${sock}`);
      await child.waitFor(() => child.json().some((e) => e.dport === port), "the connect");
      child.child.kill("SIGINT");
      assertEquals((await child.finish()).code, 0, child.stderr);
      const event = child.json().find((e) => e.dport === port)!;
      assertEquals(event.dstendpoint, { kind: "pod", namespace: "default", name: "shop-0" });
      assertEquals(child.stderr.split("\n").filter(Boolean), [
        'tcpgadget: watching pods failed (list pods failed: 500 InternalError an error on the server ("") has prevented the request from succeeding); retrying',
        "tcpgadget: tracing TCP connections (attached via tp_btf)",
      ]);
    } finally {
      await server.stop();
      await client.stop();
    }
  },
);

apiTest(
  "api: cluster mode: a list, watch, pod status, exec or deletion never answered ends the run",
  CLUSTER_SKIP !== undefined,
  async () => {
    await using cluster = await FakeCluster.start();
    const expected = noAnswer(cluster.api.url, cluster.kubeconfig, "fake");
    const trace = ["trace", "tcp", "--cluster", "--kubeconfig", cluster.kubeconfig, "-A"];
    const pods = (stderr: string[]) =>
      stderr.map((line) => line.replace(/tcpgadget-[0-9a-f]{6}-/g, "tcpgadget-RUN-"));
    const cases: [RequestFault[], string[]][] = [
      // Creating the pods (the first list and the watch are node mode's, above).
      [[{ verb: "create", resource: "pods", code: "no answer" }], [expected]],
      // Each node's steps: its pod's status, the exec that uploads.
      ...[
        { verb: "get", resource: "pods", code: "no answer" } as RequestFault,
        { resource: "pods", subresource: "exec", code: "no answer" } as RequestFault,
      ].map((fault): [RequestFault[], string[]] => [[fault], [
        `tcpgadget: node node-a: ${expected.replace("tcpgadget: ", "")}`,
        `tcpgadget: node node-b: ${expected.replace("tcpgadget: ", "")}`,
        "tcpgadget: no node could be traced (every node failed)",
      ]]),
    ];
    for (const [faults, stderr] of cases) {
      const undo = faults.map((fault) => cluster.api.failRequests({ ...fault, times: Infinity }));
      let result;
      try {
        result = await run(trace);
      } finally {
        for (const u of undo) u();
      }
      assertEquals([result.code, result.stdout], [1, ""], result.stderr.join("\n"));
      assertEquals(pods(result.stderr).sort(), stderr.sort(), JSON.stringify(faults));
      await assertNothingLeft(cluster, []);
    }

    // The watch of pods never answered: the run stops and deletes its pods;
    // deletions never answered: said for each pod, and the run ends all the same.
    const undo = [
      cluster.api.failRequests({
        verb: "watch",
        resource: "pods",
        code: "no answer",
        times: Infinity,
      }),
      cluster.api.failRequests({ verb: "delete", resource: "pods", code: "no answer", times: 2 }),
    ];
    let result;
    try {
      result = await run(trace);
    } finally {
      for (const u of undo) u();
    }
    const reason = expected.replace("tcpgadget: ", "");
    assertEquals([result.code, result.stdout], [1, ""]);
    assertEquals(
      pods(result.stderr).sort(),
      [
        expected,
        `tcpgadget: cannot delete pod default/tcpgadget-RUN-0: ${reason}`,
        `tcpgadget: cannot delete pod default/tcpgadget-RUN-1: ${reason}`,
      ].sort(),
    );
    assertEquals(cluster.agentPods().length, 2);

    // `cleanup` says the same of the pods it cannot delete, then deletes them.
    const stop = cluster.api.failRequests({
      verb: "delete",
      resource: "pods",
      code: "no answer",
      times: 2,
    });
    const cleanup = await run(["cleanup", "--kubeconfig", cluster.kubeconfig]);
    stop();
    assertEquals(
      [cleanup.code, cleanup.stdout, pods(cleanup.stderr).sort()],
      [
        1,
        "",
        [
          `tcpgadget: 2 pods could not be deleted`,
          `tcpgadget: cannot delete pod default/tcpgadget-RUN-0: ${reason}`,
          `tcpgadget: cannot delete pod default/tcpgadget-RUN-1: ${reason}`,
        ].sort(),
      ],
    );
    const again = await run(["cleanup", "--kubeconfig", cluster.kubeconfig]);
    assertEquals([again.code, again.stderr], [0, []]);
    assertEquals(again.stdout.split("\n").length, 2);
    await assertNothingLeft(cluster, []);
  },
);
