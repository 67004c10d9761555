/**
 * The traced process tree (egress run), in the real kernel: a command
 * started behind the gate (core/gated_spawn.ts) whose processes connect in
 * every way a tree can (its main thread, threads, a child, a child whose
 * leader exits first, a double-forked daemon that connects after the
 * command is gone); every one of their connections is reported with its
 * exact pid, tid and command name, and nothing else reaches user space,
 * not even a connection another process makes at the same time.
 */

import { TcpTracer } from "../core/tracer.ts";
import type { TcpEvent } from "../core/event.ts";
import { findProgram, gatedSpawn } from "../core/gated_spawn.ts";
import { TcpgadgetError } from "../core/errors.ts";
import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { needsBpf } from "./helpers/privileges.ts";
import { assertProgramsGone, programIdsHeldBy } from "./helpers/bpf_programs.ts";

const ignore = needsBpf("process_tree_test.ts");
const WORKLOAD = new URL("./helpers/tree_workload.py", import.meta.url).pathname;

/** A connection the test's server accepted, as its client introduced itself. */
interface Introduced {
  role: string;
  pid: number;
  tid: number;
  port: number;
  /** What else the line said. */
  extra: string[];
  conn: Deno.TcpConn;
}

/** Accepts connections and reads each client's "ROLE PID TID" line; keeps them open. */
function introductionServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clients: Introduced[] = [];
  const silent: Deno.TcpConn[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(256);
        let text = "";
        while (!text.includes("\n")) {
          const n = await conn.read(buffer).catch(() => null);
          if (n === null) break;
          text += new TextDecoder().decode(buffer.subarray(0, n));
        }
        const [role, pid, tid, ...extra] = text.trim().split(" ");
        if (!role) {
          silent.push(conn);
          return;
        }
        clients.push({
          role,
          pid: Number(pid),
          tid: Number(tid),
          port: (conn.remoteAddr as Deno.NetAddr).port,
          extra,
          conn,
        });
      })();
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    clients,
    /** Closes one client's connection: it then ends. */
    release(client: Introduced) {
      client.conn.close();
    },
    async close() {
      listener.close();
      await done;
      for (const client of clients) {
        try {
          client.conn.close();
        } catch {
          // released already
        }
      }
      for (const conn of silent) conn.close();
    },
  };
}

async function until(
  condition: () => boolean,
  what: string | (() => string),
  timeoutMs = 10_000,
) {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test({
  name:
    "process tree: a gated command's processes, threads and daemon are traced with exact pids, nothing else",
  ignore,
  async fn() {
    const before = new Set(programIdsHeldBy("self"));
    const tracer = TcpTracer.open({ processTree: true });
    const ours = programIdsHeldBy("self").filter((id) => !before.has(id));
    const server = introductionServer();
    const outsider = await Actor.start("tg-outsider");
    const events: TcpEvent[] = [];
    const drain = () => tracer.drain((event) => events.push(event));
    try {
      assertEquals(tracer.processTreeMembers(), []);
      assert(tracer.processTreeEmpty(), "an empty tree is empty");
      const child = await gatedSpawn(["python3", WORKLOAD, "127.0.0.1", String(server.port), "3"], {
        admit: (pid) => tracer.traceProcess(pid),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      });
      // At the same time, a process outside the tree connects.
      const outside = await outsider.do(`connect 127.0.0.1 ${server.port}`);
      assertEquals(outside.error, null);
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode("from stdin\n"));
      await writer.close();
      // Every member but the daemon connects and is released in turn.
      const roles = ["main", "thread", "thread", "child", "leader-first", "abandon", "daemon"];
      const released = new Set<Introduced>();
      let exited = false;
      const status = child.status.finally(() => exited = true);
      // Read as they come: the daemon holds the pipes until it exits.
      const stdout = new Response(child.stdout).text();
      const stderr = new Response(child.stderr).text();
      await until(
        () => {
          for (const client of server.clients) {
            if (client.role === "daemon" || released.has(client)) continue;
            released.add(client);
            server.release(client);
          }
          return exited && server.clients.length === roles.length;
        },
        () => `every member's connection (exited: ${exited}; ${server.clients.map((c) => c.role)})`,
      );
      // COMMAND's own exit status, as it is.
      assertEquals((await status).code, 3);
      assertEquals(server.clients.map((c) => c.role).sort(), [...roles].sort());
      const byRole = (role: string) => server.clients.filter((c) => c.role === role);
      const [main] = byRole("main");
      const [daemon] = byRole("daemon");
      assertEquals(main.pid, child.pid, "COMMAND is the admitted process (exec in place)");
      // The daemon outlived COMMAND and is still traced; the tree is not
      // empty until it exits.
      assert(!tracer.processTreeEmpty(), "the daemon is alive: the tree is not empty");
      assert(
        tracer.processTreeMembers().some((m) => m.pid === daemon.pid && !m.exited),
        "the daemon is a member",
      );
      server.release(daemon);
      await until(() => tracer.processTreeEmpty(), "the tree to empty");
      // COMMAND's own streams, as they are.
      assertEquals(await stdout, "from stdin\n");
      assertEquals(await stderr, "stderr\n");

      const connects = () => events.filter((e) => e.type === "C" && e.dport === server.port);
      await until(() => {
        drain();
        return connects().length >= roles.length;
      }, "the connect events");
      await new Promise((resolve) => setTimeout(resolve, 300));
      drain();
      // A thread is named after the thread that started it; the kernel
      // keeps 15 bytes of a name.
      const comm = (role: string) => `tg-tree-${role === "thread" ? "main" : role}`.slice(0, 15);
      assertEquals(
        connects().map((e) => `${e.comm} ${e.pid} ${e.tid} ${e.sport}`).sort(),
        server.clients.map((c) => `${comm(c.role)} ${c.pid} ${c.tid} ${c.port}`).sort(),
      );
      // Distinct processes, and threads of one.
      const threads = byRole("thread");
      assertEquals(threads.map((t) => t.pid), [main.pid, main.pid]);
      assert(threads.every((t) => t.tid !== main.pid), "threads have their own ids");
      assertEquals(new Set(server.clients.map((c) => c.pid)).size, 5);
      // The connect a process left unfinished as it exited is still its
      // own (the kernel closes its sockets after it has exited).
      const [abandon] = byRole("abandon");
      const abandoned = events.filter((e) => e.sport === Number(abandon.extra[0]));
      assertEquals(
        abandoned.map((e) => [e.type, e.pid, e.comm, e.error]),
        [["C", abandon.pid, "tg-tree-abandon", "ECONNABORTED"]],
      );
      // Nothing but the tree's events: not the outsider's connect, not the
      // test's own accepts and closes.
      const members = new Set(server.clients.map((c) => c.pid));
      assertEquals(events.filter((e) => !members.has(e.pid)), []);
      assert(!events.some((e) => e.sport === outside.sport), "the outsider is not traced");
      assertEquals(tracer.untracedProcesses(), 0n);
    } finally {
      await outsider.stop();
      await server.close();
      await tracer.close();
    }
    await assertProgramsGone(ours);
  },
});

Deno.test({
  name: "process tree: off, the tree's programs are not loaded and every process is traced",
  ignore,
  async fn() {
    const before = new Set(programIdsHeldBy("self"));
    const withTree = TcpTracer.open({ processTree: true });
    const treeCount = programIdsHeldBy("self").filter((id) => !before.has(id)).length;
    await withTree.close();
    const tracer = TcpTracer.open({});
    try {
      const count = programIdsHeldBy("self").filter((id) => !before.has(id)).length;
      assertEquals(treeCount - count, 3, "tree_fork, tree_exit and tree_free only with the tree");
      assertEquals(tracer.processTreeMembers(), []);
      let refused: unknown;
      try {
        tracer.traceProcess(Deno.pid);
      } catch (error) {
        refused = error;
      }
      assertEquals((refused as Error)?.message, "the tracer was opened without processTree");
      const server = introductionServer();
      const outsider = await Actor.start("tg-outsider");
      try {
        const outside = await outsider.do(`connect 127.0.0.1 ${server.port}`);
        const seen: TcpEvent[] = [];
        await until(() => {
          tracer.drain((e) => {
            if (e.type === "C" && e.sport === outside.sport) seen.push(e);
          });
          return seen.length > 0;
        }, "the outsider's connect");
        assertEquals(seen.map((e) => [e.pid, e.comm]), [[outsider.pid, "tg-outsider"]]);
      } finally {
        await outsider.stop();
        await server.close();
      }
    } finally {
      await tracer.close();
    }
  },
});

Deno.test({
  name: "gated spawn: the command starts only once admitted, however long that takes",
  ignore: Deno.build.os !== "linux",
  async fn() {
    let admittedAtMs = 0;
    let heldAs = "";
    const child = await gatedSpawn(["sh", "-c", "date +%s%N"], {
      admit: async (pid) => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
        heldAs = `${argv[0]} ${argv[3]} ${argv.slice(4, -1).join(" ")}`;
        admittedAtMs = Date.now();
      },
      stdout: "piped",
    });
    const { code, stdout } = await child.output();
    assertEquals(code, 0);
    // Held at the gate during admission: not yet the command.
    assertEquals(heldAs, "/bin/sh tcpgadget-gate sh -c date +%s%N");
    const startedAtMs = Number(BigInt(new TextDecoder().decode(stdout).trim()) / 1_000_000n);
    assert(
      startedAtMs >= admittedAtMs,
      `started ${admittedAtMs - startedAtMs} ms before admission`,
    );
  },
});

Deno.test({
  name: "gated spawn: a command is never run if its admission fails",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-gate-" });
    try {
      const marker = `${dir}/ran`;
      let admitted = 0;
      let error: unknown;
      try {
        await gatedSpawn(["touch", marker], {
          admit: (pid) => {
            admitted = pid;
            throw new TcpgadgetError("admission refused");
          },
        });
      } catch (e) {
        error = e;
      }
      assert(error instanceof TcpgadgetError && error.message === "admission refused");
      assert(admitted > 0);
      // Killed at the gate: gone, and COMMAND never ran.
      await until(() => !isProcess(admitted), "the gated child to be gone");
      assertEquals(await exists(marker), false);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "gated spawn: a program that cannot be run is one line and a shell's status",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const admit = () => {
      throw new Error("must not be admitted");
    };
    const notExecutable = await Deno.makeTempFile({ prefix: "tcpgadget-gate-" });
    await Deno.chmod(notExecutable, 0o644);
    for (
      const [command, message, exitCode] of [
        ["no-such-tcpgadget-command", '"no-such-tcpgadget-command": command not found', 127],
        [notExecutable, `${JSON.stringify(notExecutable)}: permission denied`, 126],
        ["/no/such/file", '"/no/such/file": command not found', 127],
      ] as const
    ) {
      let error: unknown;
      try {
        await gatedSpawn([command], { admit });
      } catch (e) {
        error = e;
      }
      assert(error instanceof TcpgadgetError, `${command}: ${error}`);
      assertEquals([error.message, error.exitCode], [message, exitCode]);
    }
    await Deno.remove(notExecutable);
    assertEquals(findProgram("sh", "/nonexistent:/usr/bin:/bin").endsWith("/sh"), true);
  },
});

function isProcess(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
