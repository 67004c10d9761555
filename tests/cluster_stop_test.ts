/**
 * Cluster mode's stops against the fake Kubernetes API server: a stop is
 * honoured whatever the reader of the output does (the pods still
 * deleted), a --timeout longer than one JavaScript timer does not end the
 * run at once, a pod's process named with terminal escapes is printed
 * escaped on the operator's side, and the bundle made for the pods never
 * stays in the temporary directory, whether the run is interrupted while
 * it is made or interrupted twice.
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun, tcpgadgetCommand } from "./helpers/cli.ts";
import { assertNothingLeft, clusterSkipReason, FakeCluster, PodActor } from "./helpers/cluster.ts";

const FILE = "tests/cluster_stop_test.ts";
const SKIP = clusterSkipReason();
if (SKIP) console.warn(`SKIPPED (${FILE}): ${SKIP}`);
// A compiled tcpgadget copies itself: no bundle is made.
const BUNDLE_SKIP = Deno.env.get("TCPGADGET_TEST_BINARY")
  ? "a compiled binary makes no bundle (TCPGADGET_TEST_BINARY)"
  : undefined;
if (!SKIP && BUNDLE_SKIP) console.warn(`SKIPPED (${FILE}, the bundle tests): ${BUNDLE_SKIP}`);

function test(name: string, fn: () => Promise<void>, skip = SKIP): void {
  // The fake's clients keep connections alive between requests.
  Deno.test({ name, ignore: skip !== undefined, sanitizeOps: false, sanitizeResources: false, fn });
}

const START_TIMEOUT_MS = 90_000;

async function waitUntil(condition: () => boolean, what: string, timeoutMs = START_TIMEOUT_MS) {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    assert(performance.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test("cluster: SIGTERM with a stdout nobody reads ends the run at once; the pods deleted, what was not written reported", async () => {
  await using cluster = await FakeCluster.start();
  const [command, ...rest] = tcpgadgetCommand();
  const child = new Deno.Command(command, {
    args: [
      ...rest,
      ...["trace", "tcp", "--cluster", "--kubeconfig", cluster.kubeconfig, "-A", "--host"],
      ...["-o", "json"],
    ],
    stdin: "null",
    stdout: "piped", // never read
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  await waitUntil(() => stderr.includes("tracing TCP connections on 2 nodes"), "both nodes");
  const pids = cluster.agentProcesses();
  // Each node reports each connection of the host: 8 events, about 2.6 KB
  // of JSON each, far more than the pipe (1 MiB) holds.
  const actor = await Actor.start("tg-flood");
  const { sock } = await actor.do("listen 127.0.0.1");
  await actor.do(`churn ${sock} 3000`);
  // The agents' events reach the client.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  child.kill("SIGTERM");
  const started = performance.now();
  const status = await Promise.race([
    child.status,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 60_000)),
  ]);
  const ms = performance.now() - started;
  if (!status) child.kill("SIGKILL");
  await stderrDone;
  await child.stdout.cancel();
  await actor.stop();
  assertEquals(status?.code, 0, stderr);
  // Deleting the pods waits until the kubelet has stopped them: seconds,
  // and never for the reader.
  assert(ms < 20_000, `SIGTERM took ${ms} ms: ${stderr}`);
  assertMatch(
    stderr,
    /^tcpgadget: \d+ events not written \(the reader of stdout did not keep up\)$/m,
  );
  await assertNothingLeft(cluster, pids);
});

test("cluster: a --timeout longer than one timer keeps tracing; a pod's process named with escapes is printed escaped", async () => {
  await using cluster = await FakeCluster.start({ nodes: [{ name: "node-a" }] });
  await cluster.workload("default", "web", { container: "client" });
  const evil = "tg\x1b[2J\nforged";
  const web = await PodActor.start(cluster, "default", "web", "client", evil);
  const server = await Actor.start("tg-server");
  const { sock: listener, port } = await server.do("listen 127.0.0.1");
  const run = cluster.trace(["--timeout", "2147484", "-o", "custom-columns=pod,comm,dport"]);
  await run.waitFor(() => run.stdoutLines.length > 0, "the header", START_TIMEOUT_MS);
  const pids = cluster.agentProcesses();
  const connected = await web.do(`connect 127.0.0.1 ${port}`);
  const accepted = await server.do(`accept ${listener}`);
  await web.do(`close ${connected.sock}`);
  await server.do(`wait_eof ${accepted.sock}`);
  await run.waitFor(() => run.stdoutLines.length >= 3, "the connect and the close");
  // It used to end at once (TimeoutOverflowWarning) once the nodes traced.
  let ended = false;
  run.child.status.then(() => ended = true);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assertEquals(ended, false, `still tracing: ${run.stderr}`);
  // The pod's own deadline: the timeout and 10 minutes.
  const [namespace, name] = cluster.agentPods()[0].split("/");
  assertEquals(cluster.api.pod(namespace, name)!.spec.activeDeadlineSeconds, 2147484 + 600);
  run.child.kill("SIGINT");
  assertEquals((await run.finish()).code, 0, run.stderr);
  assertEquals(run.stdoutLines, [
    "POD              COMM             DPORT",
    `web              tg\\x1b[2J\\nforged ${port}`,
    `web              tg\\x1b[2J\\nforged ${port}`,
  ]);
  await Promise.all([web.stop(), server.stop()]);
  await assertNothingLeft(cluster, pids);
});

/** A private temporary directory for the run under test, and what it holds. */
async function privateTmp(): Promise<{ dir: string; entries(): string[] } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "tg-tmpdir-" });
  return {
    dir,
    entries: () => [...Deno.readDirSync(dir)].map((entry) => entry.name).sort(),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

const bundleTest = (name: string, fn: () => Promise<void>) => test(name, fn, SKIP ?? BUNDLE_SKIP);

bundleTest(
  "cluster: Ctrl-C while the bundle for the pods is made leaves no bundle directory",
  async () => {
    await using cluster = await FakeCluster.start();
    await using tmp = await privateTmp();
    const run = CliRun.start(
      ["trace", "tcp", "--cluster", "--kubeconfig", cluster.kubeconfig, "-o", "json"],
      { env: { TMPDIR: tmp.dir } },
    );
    await waitUntil(
      () => tmp.entries().some((name) => name.startsWith("tcpgadget-bundle-")),
      "the bundle",
    );
    run.child.kill("SIGINT");
    assertEquals((await run.finish(60_000)).code, 0, run.stderr);
    assertEquals(tmp.entries(), []);
    assertEquals(run.stderr, "");
    await assertNothingLeft(cluster, []);
  },
);

bundleTest(
  "cluster: Ctrl-C once the bundle is made, while it is checked, leaves no bundle directory",
  async () => {
    await using cluster = await FakeCluster.start();
    await using tmp = await privateTmp();
    const run = CliRun.start(
      ["trace", "tcp", "--cluster", "--kubeconfig", cluster.kubeconfig, "-o", "json"],
      { env: { TMPDIR: tmp.dir } },
    );
    // The bundle is written: it is being hashed, before the upload starts.
    const bundled = () =>
      tmp.entries().some((name) => {
        try {
          return Deno.statSync(`${tmp.dir}/${name}/tcpgadget.js`).size > 0;
        } catch {
          return false;
        }
      });
    await waitUntil(bundled, "the bundle written");
    run.child.kill("SIGINT");
    assertEquals((await run.finish(60_000)).code, 0, run.stderr);
    assertEquals(tmp.entries(), []);
    await assertNothingLeft(cluster, []);
  },
);

bundleTest(
  "cluster: a second Ctrl-C while the pods are deleted exits at once, leaving the pods but not the bundle",
  async () => {
    await using cluster = await FakeCluster.start();
    await using tmp = await privateTmp();
    const run = CliRun.start(
      ["trace", "tcp", "--cluster", "--kubeconfig", cluster.kubeconfig, "-o", "json"],
      { env: { TMPDIR: tmp.dir } },
    );
    await run.waitFor(
      () => run.stderr.includes("tracing TCP connections on 2 nodes"),
      "both nodes",
      START_TIMEOUT_MS,
    );
    const pids = cluster.agentProcesses();
    run.child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 100));
    run.child.kill("SIGINT");
    const status = await run.finish();
    assertEquals(status.code, 130, run.stderr);
    assertMatch(
      run.stderr,
      /^tcpgadget: interrupted while deleting the agent pods: 'tcpgadget cleanup' removes them$/m,
    );
    assertEquals(tmp.entries(), []);
    // What the message says.
    const cleaned = await cluster.run(["cleanup", "--kubeconfig", cluster.kubeconfig]);
    assertEquals(cleaned.code, 0, cleaned.stderr);
    await assertNothingLeft(cluster, pids);
  },
);
