/**
 * Every stop of node mode is honoured within about a second, whatever the
 * reader of its output does and however far it has got: Ctrl-C, SIGTERM,
 * SIGHUP and --timeout with a stdout that nobody reads, a --timeout longer than
 * one JavaScript timer, and a stop while the Kubernetes API is contacted
 * before attaching. Real kernel, real connections; each run leaves no
 * program attached.
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { assertProgramsGone, programIdsHeldBy } from "./helpers/bpf_programs.ts";
import { CliRun, tcpgadgetCommand } from "./helpers/cli.ts";
import { needsBpf } from "./helpers/privileges.ts";

const FILE = "cli_stop_test.ts";
const ignore = needsBpf(FILE);

// Loose bounds: bug checks, not benchmarks (the machine may be loaded).
const STOP_BOUND_MS = 5000;

/** tcpgadget with a stdout pipe that is never read, and its stderr collected. */
class StalledRun {
  readonly child: Deno.ChildProcess;
  stderr = "";
  readonly #stderrDone: Promise<void>;

  constructor(args: string[]) {
    const [command, ...rest] = tcpgadgetCommand();
    const child = new Deno.Command(command, {
      args: [...rest, "trace", "tcp", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#stderrDone = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.stderr += chunk;
      }
    })();
  }

  async attached(): Promise<number[]> {
    const deadline = performance.now() + 30_000;
    while (!this.stderr.includes("tracing TCP connections")) {
      assert(performance.now() < deadline, `not attached: ${this.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return programIdsHeldBy(this.child.pid);
  }

  /**
   * Waits for the exit (killing it after `timeoutMs`); returns the status,
   * how long it took, and the lines it left in the pipe (read only now).
   */
  async exit(
    timeoutMs = 30_000,
  ): Promise<{ status: Deno.CommandStatus; ms: number; lines: string[] }> {
    const started = performance.now();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    const status = await this.child.status;
    const ms = performance.now() - started;
    clearTimeout(timer);
    await this.#stderrDone;
    // Whole lines only: the last one may have been cut by the stop.
    const lines = (await new Response(this.child.stdout).text()).split("\n").slice(0, -1);
    return { status, ms, lines };
  }
}

/** Floods the tracer: `count` connections of tg-flood, 4 events each (about 1.3 KB of JSON). */
async function flood(count: number): Promise<void> {
  const actor = await Actor.start("tg-flood");
  try {
    const { sock } = await actor.do("listen 127.0.0.1");
    assertEquals((await actor.do(`churn ${sock} ${count}`)).connections, count);
  } finally {
    await actor.stop();
  }
}

const NOT_WRITTEN =
  /^tcpgadget: (\d+) events not written \(the reader of stdout did not keep up\)$/m;

/**
 * Every event of `connections` is written, lost in the kernel, or reported
 * not written: once (at most once if the run may have stopped before the
 * last connections).
 */
function assertAccounted(
  connections: number,
  lines: string[],
  stderr: string,
  { exact = true } = {},
): number {
  const notWritten = Number(stderr.match(NOT_WRITTEN)?.[1]);
  assert(notWritten > 0, `not-written events reported: ${stderr}`);
  const lost = Number(
    stderr.match(/^tcpgadget: lost (\d+) events \(ring buffer full\)$/m)?.[1] ?? 0,
  );
  for (const line of lines) assertEquals(JSON.parse(line).comm, "tg-flood");
  const accounted = lines.length + notWritten + lost;
  if (exact) assertEquals(accounted, 4 * connections, stderr);
  else assert(accounted <= 4 * connections, `${accounted} events: ${stderr}`);
  return notWritten;
}

for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  Deno.test({
    name:
      `stop: ${signal} ends a run whose stdout is never read, within a bound; what was not written is reported`,
    ignore,
    async fn() {
      const run = new StalledRun(["-o", "json", "--comm", "tg-flood"]);
      const programs = await run.attached();
      // Far more than the pipe (1 MiB) and the output's buffers hold.
      await flood(3000);
      run.child.kill(signal);
      const { status, ms, lines } = await run.exit();
      assertEquals(status.code, 0, run.stderr);
      assert(ms < STOP_BOUND_MS, `${signal} took ${ms} ms; stderr: ${run.stderr}`);
      assertAccounted(3000, lines, run.stderr);
      await assertProgramsGone(programs);
    },
  });
}

Deno.test({
  name: "stop: --timeout ends a run whose stdout is never read, within a bound",
  ignore,
  async fn() {
    // Counted from the start: time to attach and flood on a loaded machine.
    const run = new StalledRun(["-o", "json", "--comm", "tg-flood", "--timeout", "5"]);
    const programs = await run.attached();
    const attached = performance.now();
    await flood(3000);
    const { status, lines } = await run.exit();
    const ms = performance.now() - attached;
    assertEquals(status.code, 0, run.stderr);
    assert(ms < 5000 + STOP_BOUND_MS, `ended ${ms} ms after attaching; stderr: ${run.stderr}`);
    // A loaded machine may take longer than the timeout to make them all.
    assertAccounted(3000, lines, run.stderr, { exact: false });
    await assertProgramsGone(programs);
  },
});

Deno.test({
  name:
    "stop: a --timeout longer than one timer (2,147,483 s) keeps tracing; beyond 365 days refused",
  ignore,
  async fn() {
    const run = CliRun.start(["trace", "tcp", "-o", "json", "--timeout", "2147484"]);
    await run.ready();
    const programs = programIdsHeldBy(run.pid);
    // It used to end at once (TimeoutOverflowWarning) with status 0.
    let ended = false;
    run.child.status.then(() => ended = true);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assertEquals(ended, false, `still tracing; stderr: ${run.stderr}`);
    run.child.kill("SIGINT");
    assertEquals((await run.finish()).code, 0, run.stderr);
    assertEquals(run.stderr, "tcpgadget: tracing TCP connections (attached via tp_btf)\n");
    await assertProgramsGone(programs);

    const refused = await CliRun.run(["trace", "tcp", "--timeout", "31536001"]);
    assertEquals([refused.code, refused.stdout, refused.stderr], [
      2,
      "",
      'tcpgadget: --timeout must be at most 31536000 seconds (365 days), got "31536001"\n',
    ]);
  },
});

/**
 * A TCP server on loopback that accepts connections and never answers
 * (an API server that hangs), and a kubeconfig naming it.
 */
async function silentApiServer(): Promise<
  { kubeconfig: string; accepted: Promise<void> } & AsyncDisposable
> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const connections: Deno.Conn[] = [];
  let onAccept = () => {};
  const accepted = new Promise<void>((resolve) => onAccept = resolve);
  const serving = (async () => {
    for await (const conn of listener) {
      connections.push(conn);
      onAccept();
    }
  })();
  const dir = await Deno.makeTempDir({ prefix: "tg-silent-api-" });
  const kubeconfig = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters:
- name: silent
  cluster: { server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true }
users:
- name: me
  user: { token: "t" }
contexts:
- name: silent
  context: { cluster: silent, user: me, namespace: default }
current-context: silent
`,
  );
  return {
    kubeconfig,
    accepted,
    async [Symbol.asyncDispose]() {
      listener.close();
      await serving.catch(() => {});
      for (const conn of connections) {
        try {
          conn.close();
        } catch {
          // closed by the peer
        }
      }
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test({
  name:
    "stop: Ctrl-C and --timeout are honoured while the API server does not answer, before attaching",
  ignore,
  async fn() {
    await using api = await silentApiServer();

    // Ctrl-C while the API is contacted: status 0 at once, nothing attached.
    const run = CliRun.start(["trace", "tcp", "-o", "json", "--kubeconfig", api.kubeconfig]);
    await api.accepted;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assertEquals(programIdsHeldBy(run.pid), [], "nothing attached while the API is contacted");
    const signalled = performance.now();
    run.child.kill("SIGINT");
    const status = await run.finish();
    const ms = performance.now() - signalled;
    assertEquals([status.code, status.signal], [0, null], run.stderr);
    assert(ms < STOP_BOUND_MS, `Ctrl-C took ${ms} ms`);
    assertEquals(run.stdoutLines, []);

    // --timeout counts from the start, the wait for the API included; a
    // run it ends before tracing started says so and fails.
    const started = performance.now();
    const timed = CliRun.start([
      "trace",
      "tcp",
      "-o",
      "json",
      "--kubeconfig",
      api.kubeconfig,
      "--timeout",
      "2",
    ]);
    const timedStatus = await timed.finish(30_000);
    const ran = performance.now() - started;
    assertEquals(timedStatus.code, 1, timed.stderr);
    assertEquals(timed.stderr.trim().split("\n"), [
      "tcpgadget: --timeout (2 s) ended the run before tracing started: the Kubernetes API server had not answered yet",
    ]);
    assert(ran < 2000 + STOP_BOUND_MS, `--timeout 2 ended after ${ran} ms`);
  },
});
