/**
 * The tracer in the real kernel: real processes (tcp_actor.py, each with its
 * own command name) make real connections, and every event of those
 * connections is asserted exactly: kind, PID, COMM, IP version, addresses,
 * ports, error, and that each occurs exactly once.
 */

import {
  batchIntervalMs,
  defaultRingBytes,
  TcpTracer,
  type TracerOptions,
} from "../core/tracer.ts";
import type { TcpEvent } from "../core/event.ts";
import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { assertSameEvents, collectEvents, type ExpectedEvent } from "./helpers/collect.ts";
import { createLinkedNetns, netnsInode } from "./helpers/netns.ts";
import { needsBpf } from "./helpers/privileges.ts";
import { allowedCpus, type StateChange, StateChangeRecorder } from "./helpers/ftrace.ts";
import { assertProgramsGone, programIdsHeldBy } from "./helpers/bpf_programs.ts";
import { buildChurn, type ChurnResult } from "./bench/churn.ts";
import { hasCompiler } from "./bench/compile.ts";

const ignore = needsBpf("tracer_test.ts");

Deno.test("ring buffer sizes per CPU count, and how long a busy reader waits between reads", () => {
  const mib = 1 << 20;
  assertEquals(
    [1, 2, 4, 8, 16, 64].map(defaultRingBytes),
    [4, 4, 2, 1, 0.5, 0.5].map((n) => n * mib),
  );
  // A third of the time a ring fills at 250,000 events of 128 bytes a second.
  assertEquals([4, 2, 1, 0.5, 16].map((n) => batchIntervalMs(n * mib)), [43, 21, 10, 10, 50]);
});

/** Whether this kernel's BTF types the tracepoint, so tp_btf must be used. */
function kernelHasTpBtf(): boolean {
  try {
    const btf = Deno.readFileSync("/sys/kernel/btf/vmlinux");
    return new TextDecoder("latin1").decode(btf).includes("btf_trace_inet_sock_set_state");
  } catch {
    return false;
  }
}

/** Runs `body` with a fresh tracer and actors, closing all of them after. */
async function withTracer(
  options: TracerOptions,
  body: (tracer: TcpTracer) => Promise<void>,
): Promise<void> {
  const before = new Set(programIdsHeldBy("self"));
  const tracer = TcpTracer.open(options);
  const ours = programIdsHeldBy("self").filter((id) => !before.has(id));
  try {
    assert(ours.length >= 1, `tracer holds its programs (${ours})`);
    await body(tracer);
  } finally {
    await tracer.close();
  }
  // Nothing of this tracer is left in the kernel.
  assertEquals(programIdsHeldBy("self").filter((id) => !before.has(id)), []);
  await assertProgramsGone(ours);
}

async function actors(...comms: string[]): Promise<Actor[] & AsyncDisposable> {
  const list = await Promise.all(comms.map((comm) => Actor.start(comm)));
  return Object.assign(list, {
    async [Symbol.asyncDispose]() {
      await Promise.all(list.map((actor) => actor.stop()));
    },
  });
}

interface Connection {
  listenPort: number;
  clientPort: number;
  clientSock: number;
  serverSock: number;
}

async function connect(server: Actor, client: Actor, listenAddr: string, connectAddr = listenAddr) {
  const listener = await server.do(`listen ${listenAddr}`);
  const connected = await client.do(`connect ${connectAddr} ${listener.port}`);
  assertEquals(connected.error, null);
  const accepted = await server.do(`accept ${listener.sock}`);
  assertEquals(accepted.peer_port, connected.sport);
  return {
    listenPort: listener.port as number,
    clientPort: connected.sport as number,
    clientSock: connected.sock as number,
    serverSock: accepted.sock as number,
  } satisfies Connection;
}

/** The four events of a connection opened and closed in the traced window. */
function lifecycle(
  server: Actor,
  client: Actor,
  c: Connection,
  ipversion: 4 | 6,
  serverAddr: string,
  clientAddr: string,
): ExpectedEvent[] {
  const clientSide = {
    pid: client.pid,
    comm: client.comm,
    ipversion,
    saddr: clientAddr,
    sport: c.clientPort,
    daddr: serverAddr,
    dport: c.listenPort,
  };
  const serverSide = {
    pid: server.pid,
    comm: server.comm,
    ipversion,
    saddr: serverAddr,
    sport: c.listenPort,
    daddr: clientAddr,
    dport: c.clientPort,
  };
  return [
    { type: "C", ...clientSide },
    { type: "A", ...serverSide },
    { type: "X", ...clientSide },
    { type: "X", ...serverSide },
  ];
}

for (
  const [name, listenAddr, connectAddr, ipversion, addr] of [
    ["IPv4", "127.0.0.1", "127.0.0.1", 4, "127.0.0.1"],
    ["IPv6", "::1", "::1", 6, "::1"],
    // A dual-stack listener accepts IPv4 as ::ffff:127.0.0.1: reported as IP 4.
    ["IPv4 on a dual-stack listener", "::", "127.0.0.1", 4, "127.0.0.1"],
  ] as const
) {
  for (const closer of ["client", "server"] as const) {
    Deno.test({
      name: `tracer: ${name} connect, accept, ${closer} closes first`,
      ignore,
      fn: () =>
        withTracer({}, async (tracer) => {
          // The preferred attachment, where the kernel offers it.
          assertEquals(tracer.attachMethod, kernelHasTpBtf() ? "tp_btf" : "raw_tp");
          await using list = await actors("tg-server", "tg-client");
          const [server, client] = list;
          const c = await connect(server, client, listenAddr, connectAddr);
          await client.do(`send ${c.clientSock}`);
          if (closer === "client") {
            await client.do(`close ${c.clientSock}`);
            await server.do(`wait_eof ${c.serverSock}`);
            await server.do(`close ${c.serverSock}`);
          } else {
            await server.do(`close ${c.serverSock}`);
            await client.do(`wait_eof ${c.clientSock}`);
            await client.do(`close ${c.clientSock}`);
          }
          const events = await collectEvents(tracer, [c.listenPort], 4);
          assertSameEvents(events, lifecycle(server, client, c, ipversion, addr, addr));
          // Process and namespace details of the client's connect.
          const connectEvent = events.find((e) => e.type === "C")!;
          assertEquals(connectEvent.tid, client.pid);
          assertEquals(connectEvent.uid, Deno.uid());
          assertEquals(connectEvent.mntns, Deno.statSync(`/proc/${client.pid}/ns/mnt`).ino);
          assertEquals(connectEvent.netns, Deno.statSync(`/proc/${client.pid}/ns/net`).ino);
          const wallClockMs = connectEvent.timeSec * 1000 + connectEvent.timeNsec / 1e6;
          assert(Math.abs(wallClockMs - Date.now()) < 60_000, "timestamp is wall-clock time");
        }),
    });
  }
}

Deno.test({
  name: "tracer: accept in a forked worker is attributed to the worker",
  ignore,
  fn: () =>
    withTracer({}, async (tracer) => {
      await using list = await actors("tg-master", "tg-client");
      const [master, client] = list;
      const listener = await master.do("listen 127.0.0.1");
      // The master answers once its worker has accepted.
      const forked = master.do(`fork_accept ${listener.sock} tg-worker`);
      const connected = await client.do(`connect 127.0.0.1 ${listener.port}`);
      const worker = await forked;
      assertEquals(worker.peer_port, connected.sport);
      await client.do(`close ${connected.sock}`);
      await master.do("wait_child");
      const events = await collectEvents(tracer, [listener.port], 4);
      const workerActor = { pid: worker.pid as number, comm: "tg-worker" } as Actor;
      assertSameEvents(
        events,
        lifecycle(
          workerActor,
          client,
          {
            listenPort: listener.port,
            clientPort: connected.sport,
            clientSock: 0,
            serverSock: 0,
          },
          4,
          "127.0.0.1",
          "127.0.0.1",
        ),
      );
    }),
});

Deno.test({
  name: "tracer: a reset is attributed to the closer and, on the peer, to the owner",
  ignore,
  fn: () =>
    withTracer({}, async (tracer) => {
      await using list = await actors("tg-server", "tg-client");
      const [server, client] = list;
      const c = await connect(server, client, "127.0.0.1");
      // SO_LINGER 0: the server's close sends RST; the client's socket is
      // closed in softirq, while no process is closing it.
      await server.do(`rst ${c.serverSock}`);
      assertEquals((await client.do(`wait_eof ${c.clientSock}`)).reset, true);
      await client.do(`close ${c.clientSock}`);
      const events = await collectEvents(tracer, [c.listenPort], 4);
      assertSameEvents(events, lifecycle(server, client, c, 4, "127.0.0.1", "127.0.0.1"));
    }),
});

Deno.test({
  name: "tracer: a refused connect is a connect event with ECONNREFUSED, and no close",
  ignore,
  fn: () =>
    withTracer({}, async (tracer) => {
      await using list = await actors("tg-refused");
      const [client] = list;
      // A port that was just free: nothing listens on it.
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (probe.addr as Deno.NetAddr).port;
      probe.close();
      const connected = await client.do(`connect 127.0.0.1 ${port}`);
      assertEquals(connected.error, "ECONNREFUSED");
      const events = await collectEvents(tracer, [port], 1);
      assertSameEvents(events, [{
        type: "C",
        pid: client.pid,
        comm: "tg-refused",
        ipversion: 4,
        saddr: "127.0.0.1",
        sport: connected.sport,
        daddr: "127.0.0.1",
        dport: port,
        error: "ECONNREFUSED",
      }]);
    }),
});

Deno.test({
  name: "tracer: events of processes on different CPUs come out in time order",
  ignore: ignore || navigator.hardwareConcurrency < 2,
  fn: () =>
    withTracer({}, async (tracer) => {
      // One ring buffer per CPU: the reader merges them by timestamp.
      await using list = await actors("tg-server", "tg-client");
      const [server, client] = list;
      await server.do("cpu 0");
      await client.do("cpu 1");
      const connections: Connection[] = [];
      for (let i = 0; i < 10; i++) {
        const c = await connect(server, client, "127.0.0.1");
        await client.do(`close ${c.clientSock}`);
        await server.do(`wait_eof ${c.serverSock}`);
        await server.do(`close ${c.serverSock}`);
        connections.push(c);
      }
      const ports = connections.map((c) => c.listenPort);
      const events = await collectEvents(tracer, ports, 40);
      assertSameEvents(
        events,
        connections.flatMap((c) => lifecycle(server, client, c, 4, "127.0.0.1", "127.0.0.1")),
      );
      const times = events.map((e) => BigInt(e.timeSec) * 1_000_000_000n + BigInt(e.timeNsec));
      for (let i = 1; i < times.length; i++) {
        assert(
          times[i - 1] <= times[i],
          `event ${i} (${events[i].type}) is older than the one before`,
        );
      }
      // As the actors did them: connect, accept, client close, server close.
      for (const c of connections) {
        const kinds = events.filter((e) => e.sport === c.clientPort || e.dport === c.clientPort)
          .map((e) => `${e.type}${e.pid === client.pid ? "c" : "s"}`);
        assertEquals(kinds, ["Cc", "As", "Xc", "Xs"]);
      }
    }),
});

Deno.test({
  name: "tracer: a connection opened before tracing started gets its closes",
  ignore,
  async fn() {
    await using list = await actors("tg-server", "tg-client");
    const [server, client] = list;
    const c = await connect(server, client, "127.0.0.1");
    await withTracer({}, async (tracer) => {
      await client.do(`close ${c.clientSock}`);
      await server.do(`wait_eof ${c.serverSock}`);
      await server.do(`close ${c.serverSock}`);
      const events = await collectEvents(tracer, [c.listenPort], 2);
      assertSameEvents(
        events,
        lifecycle(server, client, c, 4, "127.0.0.1", "127.0.0.1").filter((e) => e.type === "X"),
      );
    });
  },
});

Deno.test({
  name: "tracer: a pre-existing connection reset by close with unread data",
  ignore,
  async fn() {
    await using list = await actors("tg-server", "tg-client");
    const [server, client] = list;
    const c = await connect(server, client, "127.0.0.1");
    await client.do(`send ${c.clientSock}`);
    await withTracer({}, async (tracer) => {
      // Unread data makes close() send RST: ESTABLISHED -> CLOSE directly.
      await new Promise((resolve) => setTimeout(resolve, 50));
      await server.do(`close ${c.serverSock}`);
      await client.do(`wait_eof ${c.clientSock}`);
      await client.do(`close ${c.clientSock}`);
      const events = await collectEvents(tracer, [c.listenPort], 2);
      assertSameEvents(
        events,
        lifecycle(server, client, c, 4, "127.0.0.1", "127.0.0.1").filter((e) => e.type === "X"),
      );
    });
  },
});

Deno.test({
  name: "tracer: connections across a veth pair into a network namespace, IPv4 and IPv6",
  ignore,
  async fn() {
    await using netns = createLinkedNetns();
    await withTracer({}, async (tracer) => {
      const server = await Actor.start("tg-ns-server", { netns: netns.name });
      const client = await Actor.start("tg-ns-client");
      try {
        for (
          const [listen, serverAddr, clientAddr, ipversion] of [
            ["0.0.0.0", netns.nsAddress, netns.hostAddress, 4],
            ["::", netns.nsAddress6, netns.hostAddress6, 6],
          ] as const
        ) {
          const listener = await server.do(`listen ${listen} v6only`);
          const connected = await client.do(`connect ${serverAddr} ${listener.port}`);
          assertEquals(connected.error, null);
          const accepted = await server.do(`accept ${listener.sock}`);
          await client.do(`close ${connected.sock}`);
          await server.do(`wait_eof ${accepted.sock}`);
          await server.do(`close ${accepted.sock}`);
          const c = {
            listenPort: listener.port,
            clientPort: connected.sport,
            clientSock: 0,
            serverSock: 0,
          };
          const events = await collectEvents(tracer, [listener.port], 4);
          const expected = lifecycle(server, client, c, ipversion, serverAddr, clientAddr);
          // The server's side has the server's view: its address first.
          assertSameEvents(events, expected);
          const serverNetns = netnsInode(netns.name);
          for (const event of events) {
            const inNamespace = event.pid === server.pid;
            assertEquals(
              event.netns,
              inNamespace ? serverNetns : Deno.statSync("/proc/self/ns/net").ino,
            );
          }
        }
      } finally {
        await server.stop();
        await client.stop();
      }
    });
  },
});

Deno.test({
  name: "tracer: shutdown(SHUT_WR) is the close of that side",
  ignore,
  fn: () =>
    withTracer({}, async (tracer) => {
      await using list = await actors("tg-server", "tg-client");
      const [server, client] = list;
      const c = await connect(server, client, "::1");
      await client.do(`shutdown ${c.clientSock}`);
      await server.do(`wait_eof ${c.serverSock}`);
      await server.do(`close ${c.serverSock}`);
      await client.do(`wait_eof ${c.clientSock}`);
      await client.do(`close ${c.clientSock}`);
      const events = await collectEvents(tracer, [c.listenPort], 4);
      assertSameEvents(events, lifecycle(server, client, c, 6, "::1", "::1"));
    }),
});

Deno.test({
  name: "tracer: the raw tracepoint fallback reports the same events",
  ignore,
  fn: () =>
    withTracer({ forceRawTracepoint: true }, async (tracer) => {
      assertEquals(tracer.attachMethod, "raw_tp");
      await using list = await actors("tg-server", "tg-client");
      const [server, client] = list;
      const c = await connect(server, client, "127.0.0.1");
      await client.do(`close ${c.clientSock}`);
      await server.do(`wait_eof ${c.serverSock}`);
      await server.do(`close ${c.serverSock}`);
      const events = await collectEvents(tracer, [c.listenPort], 4);
      assertSameEvents(events, lifecycle(server, client, c, 4, "127.0.0.1", "127.0.0.1"));
    }),
});

Deno.test({
  name: "tracer: events dropped by a full ring buffer are counted and reported",
  ignore,
  async fn() {
    const warnings: string[] = [];
    const options: TracerOptions = {
      ringBufferBytes: 4096, // room for about 36 events
      onWarning: (message) => warnings.push(message),
    };
    await withTracer(options, async (tracer) => {
      await using list = await actors("tg-server", "tg-client");
      const [server, client] = list;
      // 50 connections, 200 events, while nobody reads.
      for (let i = 0; i < 50; i++) {
        const c = await connect(server, client, "127.0.0.1");
        await client.do(`close ${c.clientSock}`);
        await server.do(`close ${c.serverSock}`);
      }
      const lost = tracer.lostEvents();
      let read = 0;
      tracer.drain(() => read++);
      // Every event is either read or counted as lost (other processes'
      // events may add to both).
      assert(lost > 0n, "some events were lost");
      assert(read + Number(lost) >= 200, `read ${read} + lost ${lost} >= 200`);
      tracer.reportLost();
      const lostWarnings = () => warnings.filter((w) => w.startsWith("lost "));
      assertEquals(lostWarnings(), [`lost ${lost} events (ring buffer full)`]);
      tracer.reportLost(); // nothing new: no second warning
      assertEquals(lostWarnings().length, 1);
    });
  },
});

Deno.test({
  name: "tracer: a close by another process than the owner is attributed to the closer",
  ignore,
  fn: () =>
    withTracer({}, async (tracer) => {
      for (const mode of ["", "rst"]) {
        await using list = await actors("tg-server", "tg-client");
        const [server, client] = list;
        const c = await connect(server, client, "127.0.0.1");
        // The client hands its socket to a child, which closes it (FIN, or
        // RST: ESTABLISHED -> CLOSE in that child's close()).
        const child = await client.do(`fork_close ${c.clientSock} tg-heir ${mode}`);
        await server.do(`wait_eof ${c.serverSock}`);
        await server.do(`close ${c.serverSock}`);
        const events = await collectEvents(tracer, [c.listenPort], 4);
        const expected = lifecycle(server, client, c, 4, "127.0.0.1", "127.0.0.1");
        const heirClose = expected.find((e) => e.type === "X" && e.pid === client.pid)!;
        heirClose.pid = child.pid;
        heirClose.comm = "tg-heir";
        assertSameEvents(events, expected);
      }
    }),
});

Deno.test({
  name: "tracer: the library's events() iterator yields events until stop()",
  ignore,
  fn: () =>
    withTracer({ kinds: { connect: true } }, async (tracer) => {
      await using list = await actors("tg-refused");
      const [client] = list;
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (probe.addr as Deno.NetAddr).port;
      probe.close();
      const connected = client.do(`connect 127.0.0.1 ${port}`);
      const seen = [];
      for await (const event of tracer.events()) {
        if (event.dport !== port) continue;
        seen.push(event);
        tracer.stop();
      }
      await connected;
      assertEquals(
        seen.map((e) => [e.type, e.pid, e.comm, e.error]),
        [["C", client.pid, "tg-refused", "ECONNREFUSED"]],
      );
    }),
});

const noCompiler = !hasCompiler();
if (noCompiler) console.warn("SKIPPED (tracer_test.ts rescue): no C compiler for tg-churn");

for (const forceRawTracepoint of [false, true]) {
  Deno.test({
    name:
      `tracer: state changes the kernel skips on a busy CPU are rescued, no event lost or doubled${
        forceRawTracepoint ? " (raw_tp)" : ""
      }`,
    ignore: ignore || noCompiler,
    async fn() {
      // tg-churn (the benchmark's load generator) opens and closes loopback
      // connections as fast as it can; its softirqs interrupt the handler
      // often enough that the kernel skips hundreds of its runs a second.
      const dir = await Deno.makeTempDir({ prefix: "tcpgadget-rescue-" });
      let kernel: StateChangeRecorder | undefined;
      try {
        const churn = await buildChurn(dir);
        const warnings: string[] = [];
        const options = { forceRawTracepoint, onWarning: (w: string) => warnings.push(w) };
        // The kernel's own record of the connects and closes, as ground
        // truth: rarely (about once in 3 to 5 million connections here) a
        // socket leaves CLOSE_WAIT without the tracepoint being called,
        // and ftrace does not see that close either.
        // tg-churn is pinned to two CPUs (loopback softirqs run on the
        // sender's CPU): only theirs need a large buffer, about 100 bytes
        // for each of 3 changes per connection.
        const cpus = allowedCpus().slice(0, 2);
        kernel = StateChangeRecorder.start(
          "(oldstate == 2 && newstate == 1) || oldstate == 8 || (oldstate == 1 && newstate != 8)",
          { cpus, bufferKib: 32 << 10 },
        );
        await withTracer(options, async (tracer) => {
          assertEquals(tracer.attachMethod, forceRawTracepoint ? "raw_tp" : "tp_btf");
          const rounds = 5;
          let round = 0;
          for (; round < rounds && tracer.rescuedRuns() === 0n; round++) {
            const connections = 100_000;
            const counts = { C: 0, A: 0, X: 0, U: 0 };
            // taskset execs tg-churn: the pid stays the same.
            const child = new Deno.Command("taskset", {
              args: [
                "-c",
                cpus.join(","),
                churn,
                ...["--connections", String(connections), "--threads", "2", "--inflight", "16"],
              ],
              stdout: "piped",
              stderr: "inherit",
            }).spawn();
            const pid = child.pid;
            const unknown: { sport: number; dport: number }[] = [];
            const count = (e: TcpEvent) => {
              if (e.pid === pid) counts[e.type]++;
              else if (e.type === "U") unknown.push({ sport: e.sport, dport: e.dport });
            };
            const output = child.output();
            let done = false;
            output.finally(() => done = true);
            while (!done) {
              tracer.drain(count, { reuse: true });
              await new Promise((resolve) => setTimeout(resolve, 5));
            }
            const report: ChurnResult = JSON.parse(new TextDecoder().decode((await output).stdout));
            assertEquals(report.connections, connections);
            // Its last events may still be on their way from the kernel.
            const expected = 4 * connections;
            const deadline = performance.now() + 5000;
            while (counts.C + counts.A + counts.X < expected && performance.now() < deadline) {
              await new Promise((resolve) => setTimeout(resolve, 20));
              tracer.drain(count, { reuse: true });
            }
            const onChurnPorts = unknown.filter((u) =>
              report.ports.includes(u.sport) || report.ports.includes(u.dport)
            );
            const seen = kernelCounts(kernel!.take(), report.ports);
            assertEquals(seen.C, connections);
            if (seen.X !== 2 * connections) {
              console.log(`the kernel traced ${seen.X} closes of ${2 * connections} (ftrace)`);
            }
            assertEquals(
              { ...counts, U: onChurnPorts.length },
              { C: connections, A: connections, X: seen.X, U: 0 },
            );
            assertEquals(tracer.lostEvents(), 0n);
            assertEquals(tracer.unhandledRuns(), 0n);
          }
          tracer.reportLost(true);
          assertEquals(warnings.filter((w) => w.startsWith("lost")), []);
          if (tracer.rescuedRuns() === 0n) {
            console.warn(
              `SKIPPED (tracer_test.ts rescue): the kernel skipped no run in ${round} rounds ` +
                "of 100,000 connections; only exact counts were checked",
            );
          } else {
            console.log(`rescued ${tracer.rescuedRuns()} state changes in ${round} rounds`);
          }
        });
      } finally {
        kernel?.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** Connects (SYN_SENT -> ESTABLISHED) and closes (open -> not open) on `ports`. */
function kernelCounts(changes: StateChange[], ports: number[]): { C: number; X: number } {
  const open = (state: string) => state === "TCP_ESTABLISHED" || state === "TCP_CLOSE_WAIT";
  let C = 0, X = 0;
  for (const change of changes) {
    if (!ports.includes(change.sport) && !ports.includes(change.dport)) continue;
    if (change.oldstate === "TCP_SYN_SENT" && change.newstate === "TCP_ESTABLISHED") C++;
    else if (open(change.oldstate) && !open(change.newstate)) X++;
  }
  return { C, X };
}
