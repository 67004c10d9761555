/**
 * What an agent pod runs besides the tracer, checked on this host with the
 * real kernel: `trace tcp --agent-pid-file` (an agent started after its
 * stream dropped stops the one before), and `agent idle` (the idle process
 * of an --agent-image pod, whose image has no `sleep`).
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { assertProgramsGone, programIdsHeldBy } from "./helpers/bpf_programs.ts";
import { CliRun } from "./helpers/cli.ts";
import { needsBpf } from "./helpers/privileges.ts";

const FILE = "agent_test.ts";

Deno.test({
  name: "agent: a tracer started with the pid file of a running one stops it and traces",
  ignore: needsBpf(FILE),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-agent-test-" });
    const pidFile = `${dir}/agent.pid`;
    const args = ["trace", "tcp", "-o", "json", "--connect-only", `--agent-pid-file=${pidFile}`];
    const first = CliRun.start(args);
    let second: CliRun | undefined;
    const client = await Actor.start("agentprobe");
    try {
      await first.ready();
      assertEquals(Deno.readTextFileSync(pidFile), `${first.pid}\n`);
      const firstPrograms = programIdsHeldBy(first.pid);
      second = CliRun.start(args);
      // The first one is stopped as by SIGTERM: a clean end, its programs detached.
      assertEquals((await first.finish()).code, 0, first.stderr);
      await assertProgramsGone(firstPrograms);
      await second.ready();
      assertEquals(Deno.readTextFileSync(pidFile), `${second.pid}\n`);
      // The second traces.
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (probe.addr as Deno.NetAddr).port;
      probe.close();
      await client.do(`connect 127.0.0.1 ${port}`);
      await second.waitFor(
        () => second!.json().some((e) => e.pid === client.pid && e.dport === port),
        "the second tracer's connect event",
      );
      const event = second.json().find((e) => e.pid === client.pid && e.dport === port)!;
      assertEquals([event.operation, event.comm, event.daddr], [
        "connect",
        "agentprobe",
        "127.0.0.1",
      ]);
      second.child.kill("SIGINT");
      assertEquals((await second.finish()).code, 0, second.stderr);
    } finally {
      await client.stop();
      for (const run of [first, second]) {
        if (run === undefined) continue;
        try {
          run.child.kill("SIGKILL");
        } catch {
          // ended
        }
        await run.child.status;
      }
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("agent: 'agent idle' ends at once on SIGTERM, by itself after its seconds", async () => {
  const idle = CliRun.start(["agent", "idle", "600"]);
  // Deno starts, then the signal handlers are in place.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const sent = performance.now();
  idle.child.kill("SIGTERM");
  const status = await idle.finish();
  assertEquals([status.code, idle.stderr, idle.stdoutLines], [0, "", []]);
  assert(performance.now() - sent < 5000, "ended within 5 s of SIGTERM");

  const started = performance.now();
  const short = await CliRun.run(["agent", "idle", "2"]);
  assertEquals([short.code, short.stdout, short.stderr], [0, "", ""]);
  assert(performance.now() - started >= 2000, "idled its 2 s");
});

Deno.test("agent: 'agent' with anything but 'idle SECONDS' is one usage line", async () => {
  for (const args of [[], ["idle"], ["idle", "x"], ["idle", "1", "2"], ["run", "1"]]) {
    const { code, stdout, stderr } = await CliRun.run(["agent", ...args]);
    assertEquals(
      [code, stdout, stderr],
      [
        2,
        "",
        "tcpgadget: usage: tcpgadget agent idle SECONDS (internal: the agent pod's idle process)\n",
      ],
      args.join(" "),
    );
  }
});
