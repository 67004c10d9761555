/**
 * The command line end to end, as a user runs it: real kernel, real
 * connections, every output format, the in-kernel filters, every way the
 * program ends (each leaving nothing attached), and the one-line errors.
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { assertProgramsGone, programIdsHeldBy } from "./helpers/bpf_programs.ts";
import { CliRun, inPrivateMounts } from "./helpers/cli.ts";
import { SEED_JSON_KEYS } from "../cli/output/json_formatter.ts";
import { needsBpf } from "./helpers/privileges.ts";

const ignore = needsBpf("cli_test.ts");
const HOSTNAME = Deno.hostname();

/** Starts the tracer, waits until attached, and notes the programs it holds. */
async function startTracer(args: string[]): Promise<{ run: CliRun; programs: number[] }> {
  const run = CliRun.start(["trace", "tcp", ...args]);
  await run.ready();
  const programs = programIdsHeldBy(run.pid);
  assert(programs.length >= 1, `tracer holds its programs: ${programs}`);
  return { run, programs };
}

/** Stops with a signal, checks exit status 0, a quiet stderr and no program left. */
async function stopTracer(
  { run, programs }: { run: CliRun; programs: number[] },
  signal: Deno.Signal = "SIGINT",
): Promise<void> {
  // Events are read at least every 100 ms; let the last ones arrive.
  await new Promise((resolve) => setTimeout(resolve, 300));
  run.child.kill(signal);
  const status = await run.finish();
  assertEquals(status.code, 0, `exit status; stderr: ${run.stderr}`);
  await assertProgramsGone(programs);
}

async function pair(): Promise<[Actor, Actor] & AsyncDisposable> {
  const server = await Actor.start("tg-server");
  const client = await Actor.start("tg-client");
  return Object.assign([server, client] as [Actor, Actor], {
    async [Symbol.asyncDispose]() {
      await server.stop();
      await client.stop();
    },
  });
}

/** A connection opened, used and closed by the client first; returns its ports. */
async function roundTrip(server: Actor, client: Actor, addr = "127.0.0.1") {
  const listener = await server.do(`listen ${addr}`);
  const connected = await client.do(`connect ${addr} ${listener.port}`);
  const accepted = await server.do(`accept ${listener.sock}`);
  await client.do(`close ${connected.sock}`);
  await server.do(`wait_eof ${accepted.sock}`);
  await server.do(`close ${accepted.sock}`);
  return { port: listener.port as number, clientPort: connected.sport as number };
}

async function refusedPort(): Promise<number> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return await Promise.resolve(port);
}

Deno.test({
  name: "cli: -o json prints the seed's keys for connect, accept and close",
  ignore,
  async fn() {
    const tracer = await startTracer(["-o", "json"]);
    await using actors = await pair();
    const [server, client] = actors;
    const { port, clientPort } = await roundTrip(server, client, "::1");
    await stopTracer(tracer);
    const events = tracer.run.json().filter((e) => e.sport === port || e.dport === port);
    const summary = events.map((e) =>
      [e.operation, e.pid, e.comm, e.ipversion, e.saddr, e.sport, e.daddr, e.dport].join(" ")
    ).sort();
    assertEquals(
      summary,
      [
        `accept ${server.pid} tg-server 6 ::1 ${port} ::1 ${clientPort}`,
        `close ${client.pid} tg-client 6 ::1 ${clientPort} ::1 ${port}`,
        `close ${server.pid} tg-server 6 ::1 ${port} ::1 ${clientPort}`,
        `connect ${client.pid} tg-client 6 ::1 ${clientPort} ::1 ${port}`,
      ].sort(),
    );
    for (const event of events) {
      assertEquals(Object.keys(event).slice(0, SEED_JSON_KEYS.length), SEED_JSON_KEYS);
      assertEquals(
        [event.type, event.node, event.namespace, event.pod, event.container],
        ["normal", HOSTNAME, "<>", "<>", "<>"],
      );
    }
    // As the seed shows it: Go's escaping of <>.
    assert(tracer.run.stdoutLines.some((l) => l.includes('"namespace":"\\u003c\\u003e"')));
  },
});

Deno.test({
  name: "cli: default columns, as in the seed",
  ignore,
  async fn() {
    const tracer = await startTracer([]);
    await using actors = await pair();
    const [server, client] = actors;
    const { port, clientPort } = await roundTrip(server, client);
    await stopTracer(tracer);
    const [header, ...lines] = tracer.run.stdoutLines;
    assertEquals(
      header,
      "NODE             NAMESPACE        POD              CONTAINER        T PID    COMM             IP  SADDR            DADDR            SPORT   DPORT",
    );
    const rows = lines.map((line) => line.split(/\s+/))
      .filter((f) => f[10] === String(port) || f[11] === String(port));
    const expected = [
      ["C", client.pid, "tg-client", clientPort, port],
      ["A", server.pid, "tg-server", port, clientPort],
      ["X", client.pid, "tg-client", clientPort, port],
      ["X", server.pid, "tg-server", port, clientPort],
    ].map(([t, pid, comm, sport, dport]) =>
      [HOSTNAME, "<>", "<>", "<>", t, pid, comm, "4", "127.0.0.1", "127.0.0.1", sport, dport]
        .map(String)
    );
    assertEquals(rows, expected);
    // Columns line up under the header.
    const connectLine = lines.find((l) => l.includes(" C "))!;
    assertEquals(connectLine.indexOf(" C ") + 1, header.indexOf(" T ") + 1);
  },
});

Deno.test({
  name: "cli: custom-columns with the ERROR column, --failure-only",
  ignore,
  async fn() {
    const tracer = await startTracer([
      "-o",
      "custom-columns=pid,comm,error,dport",
      "--failure-only",
    ]);
    await using actors = await pair();
    const [server, client] = actors;
    const port = await refusedPort();
    const refused = await client.do(`connect 127.0.0.1 ${port}`);
    assertEquals(refused.error, "ECONNREFUSED");
    await roundTrip(server, client); // succeeds: not shown
    await stopTracer(tracer);
    assertEquals(tracer.run.stdoutLines, [
      "PID    COMM             ERROR        DPORT",
      `${String(client.pid).padEnd(6)} tg-client        ECONNREFUSED ${port}`,
    ]);
  },
});

Deno.test({
  name: "cli: --pid and --comm keep only the attributed process's events",
  ignore,
  async fn() {
    for (const flag of ["--pid", "--comm"]) {
      await using actors = await pair();
      const [server, client] = actors;
      const tracer = await startTracer([
        "-o",
        "json",
        flag,
        flag === "--pid" ? String(client.pid) : "tg-client",
      ]);
      const { port } = await roundTrip(server, client);
      await stopTracer(tracer);
      const seen = tracer.run.json().filter((e) => e.sport === port || e.dport === port)
        .map((e) => `${e.operation} ${e.pid}`).sort();
      assertEquals(seen, [`close ${client.pid}`, `connect ${client.pid}`], flag);
    }
  },
});

Deno.test({
  name: "cli: --connect-only and --accept-only select event kinds in the kernel",
  ignore,
  async fn() {
    for (
      const [flag, kinds] of [
        ["--connect-only", ["connect", "connect"]],
        ["--accept-only", ["accept"]],
      ] as const
    ) {
      await using actors = await pair();
      const [server, client] = actors;
      const tracer = await startTracer(["-o", "json", flag]);
      const { port } = await roundTrip(server, client);
      const refused = await refusedPort();
      await client.do(`connect 127.0.0.1 ${refused}`);
      await stopTracer(tracer);
      const seen = tracer.run.json()
        .filter((e) => [port, refused].includes(e.dport as number) || e.sport === port)
        .map((e) => e.operation);
      assertEquals(seen, [...kinds], flag);
    }
  },
});

Deno.test({
  name: "cli: SIGTERM, --timeout and a closed stdout each end with status 0 and nothing attached",
  ignore,
  async fn() {
    // SIGTERM
    await stopTracer(await startTracer(["-o", "json"]), "SIGTERM");

    // --timeout: no signal needed.
    const started = performance.now();
    const timed = await startTracer(["--timeout", "1"]);
    const status = await timed.run.finish();
    assertEquals(status.code, 0);
    const elapsed = performance.now() - started;
    assert(elapsed >= 1000, `ran ${elapsed} ms`);
    await assertProgramsGone(timed.programs);

    // The reader of stdout goes away (`| head -1`) while nothing is traced.
    const piped = await startTracer([]);
    await piped.run.closeStdout();
    assertEquals((await piped.run.finish(5000)).code, 0);
    assertEquals(piped.run.stderr, "");
    await assertProgramsGone(piped.programs);
  },
});

Deno.test({
  name: "cli: a closed stdout under a stream of events",
  ignore,
  async fn() {
    const tracer = await startTracer(["-o", "json"]);
    await using actors = await pair();
    const [server, client] = actors;
    await tracer.run.closeStdout();
    // Writing now fails with EPIPE: the tracer notices and ends quietly.
    await roundTrip(server, client);
    assertEquals((await tracer.run.finish(5000)).code, 0);
    assertEquals(
      tracer.run.stderr.trim(),
      "tcpgadget: tracing TCP connections (attached via tp_btf)",
    );
    await assertProgramsGone(tracer.programs);
  },
});

/** Runs tcpgadget to completion and checks a single-line error. */
async function assertOneLineError(
  args: string[],
  expected: string | RegExp,
  code: number,
  options: Parameters<typeof CliRun.run>[1] = {},
): Promise<void> {
  const result = await CliRun.run(args, options);
  assertEquals(result.code, code, `exit status; stderr: ${result.stderr}`);
  assertEquals(result.stdout, "");
  assertEquals(result.stderr.split("\n").length, 2, `one line: ${result.stderr}`);
  if (typeof expected === "string") assertEquals(result.stderr, `tcpgadget: ${expected}\n`);
  else assertMatch(result.stderr, expected);
}

Deno.test("cli: usage errors are one line with exit status 2", async () => {
  await assertOneLineError(
    ["trace", "tcp", "--bogus"],
    "unknown flag --bogus (see 'tcpgadget trace tcp --help')",
    2,
  );
  await assertOneLineError(
    ["trace", "tcp", "-o", "custom-columns=pid,nope"],
    'unknown column "nope"; valid columns: node, namespace, pod, container, t, pid, comm, ip, saddr, daddr, sport, dport, error, tid, uid, gid, mntns, netns, containerid, poduid, src, dst, dstname, timestamp',
    2,
  );
  await assertOneLineError(["trace", "udp"], 'unknown gadget "udp": only "tcp" is available', 2);
  await assertOneLineError(
    ["frobnicate"],
    `unknown command "frobnicate" (see 'tcpgadget help')`,
    2,
  );
});

Deno.test({
  name: "cli: without root privileges, a clear error",
  ignore,
  async fn() {
    // Still uid 0, but with every capability dropped.
    await assertOneLineError(
      ["trace", "tcp"],
      "missing privileges: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load BPF programs; run tcpgadget as root (sudo)",
      1,
      { wrapper: ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"] },
    );
  },
});

Deno.test({
  name: "cli: kernel without BTF, a clear error",
  ignore,
  async fn() {
    await assertOneLineError(
      ["trace", "tcp"],
      "kernel BTF not found at /sys/kernel/btf/vmlinux: tcpgadget needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since Linux 5.8)",
      1,
      { wrapper: inPrivateMounts("mount -t tmpfs none /sys/kernel/btf") },
    );
  },
});

const UNMOUNT_TRACEFS =
  "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; true";

Deno.test({
  name: "cli: tracefs not mounted: tcpgadget mounts it and traces",
  ignore,
  async fn() {
    const run = CliRun.start(["trace", "tcp", "-o", "json", "--connect-only"], {
      wrapper: inPrivateMounts(UNMOUNT_TRACEFS),
    });
    await run.ready();
    await using actors = await pair();
    const [server, client] = actors;
    const { port } = await roundTrip(server, client);
    await new Promise((resolve) => setTimeout(resolve, 300));
    run.child.kill("SIGINT");
    assertEquals((await run.finish()).code, 0);
    assertEquals(run.json().filter((e) => e.dport === port).map((e) => e.pid), [client.pid]);
  },
});

Deno.test({
  name: "cli: tracefs missing and impossible to mount, a clear error",
  ignore,
  async fn() {
    // /sys/kernel becomes a read-only tmpfs holding only the real btf/.
    const setup = [
      UNMOUNT_TRACEFS,
      "mkdir -p /run/tgtest-btf",
      "mount --bind /sys/kernel/btf /run/tgtest-btf",
      "mount -t tmpfs none /sys/kernel",
      "mkdir /sys/kernel/btf",
      "mount --move /run/tgtest-btf /sys/kernel/btf",
      "mount -o remount,ro /sys/kernel",
    ].join(" && ");
    await assertOneLineError(
      ["trace", "tcp"],
      "tracefs is not mounted at /sys/kernel/tracing and mounting it failed (No such file or directory): mount it with 'mount -t tracefs tracefs /sys/kernel/tracing'",
      1,
      { wrapper: inPrivateMounts(setup) },
    );
  },
});

Deno.test({
  name: "cli: libbpf that cannot be loaded, a clear error",
  ignore,
  async fn() {
    await assertOneLineError(
      ["trace", "tcp"],
      /^tcpgadget: cannot load libbpf from \/nonexistent\/libbpf\.so\.1 \(TCPGADGET_LIBBPF\): .*No such file or directory.*\n$/,
      1,
      { env: { TCPGADGET_LIBBPF: "/nonexistent/libbpf.so.1" } },
    );
  },
});
