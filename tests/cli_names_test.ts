/**
 * Names from the traced system as the command line prints them: a process
 * that names itself with terminal escapes and a newline cannot move the
 * cursor or forge a line (escaped in columns, custom-columns, JSON and on
 * stderr), and names in UTF-8 are printed as such, also when the kernel
 * cut one in the middle of a character. Real processes, real connections.
 */

import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { needsBpf } from "./helpers/privileges.ts";

const ignore = needsBpf("cli_names_test.ts");
const HOSTNAME = Deno.hostname();

/** Traces `actor`'s connection to `server` with each of `outputs`; returns each one's stdout. */
async function traceConnection(
  actor: Actor,
  server: Actor,
  outputs: string[][],
): Promise<{ lines: string[][]; port: number; sport: number }> {
  const runs = outputs.map((args) =>
    CliRun.start(["trace", "tcp", "--pid", String(actor.pid), ...args])
  );
  await Promise.all(runs.map((run) => run.ready()));
  const listener = await server.do("listen 127.0.0.1");
  const connected = await actor.do(`connect 127.0.0.1 ${listener.port}`);
  const accepted = await server.do(`accept ${listener.sock}`);
  await actor.do(`close ${connected.sock}`);
  await server.do(`wait_eof ${accepted.sock}`);
  await server.do(`close ${accepted.sock}`);
  // Both events of the actor (C, X) in every output.
  for (const run of runs) {
    await run.waitFor(
      () => run.stdoutLines.filter((l) => l.includes(String(actor.pid))).length >= 2,
      "the connect and the close",
    );
  }
  for (const run of runs) run.child.kill("SIGINT");
  for (const run of runs) assertEquals((await run.finish()).code, 0, run.stderr);
  return { lines: runs.map((run) => run.stdoutLines), port: listener.port, sport: connected.sport };
}

/** A default-columns line of a host process, with the COMM column `width` wide. */
function columnsLine(
  t: string,
  pid: number,
  comm: string,
  width: number,
  sport: number,
  dport: number,
): string {
  const node = HOSTNAME.padEnd(Math.max(16, HOSTNAME.length) + 1);
  return `${node}<>               <>               <>               ${t} ${String(pid).padEnd(7)}${
    comm.padEnd(width + 1)
  }4   127.0.0.1        127.0.0.1        ${String(sport).padEnd(8)}${dport}`;
}

const HEADER_REST =
  "NAMESPACE        POD              CONTAINER        T PID    COMM             IP  SADDR            DADDR            SPORT   DPORT";

Deno.test({
  name:
    "names: a command name with ESC[2J and a newline, or DEL, C1, U+2028 and a bidi override, is escaped in columns, custom-columns and JSON",
  ignore,
  async fn() {
    for (
      const [evil, shown, literal] of [
        // 17 characters shown: COMM widens.
        ["tg\x1b[2J\nforged", "tg\\x1b[2J\\nforged", '"tg\\u001b[2J\\nforged"'],
        // In UTF-8: 11 bytes.
        [
          "tg\x7f\u0085\u2028\u202e",
          "tg\\x7f\\u0085\\u2028\\u202e",
          '"tg\\u007f\\u0085\\u2028\\u202e"',
        ],
      ]
    ) {
      await using actors = await pairOf(evil);
      const [actor, server] = actors;
      const { lines, port, sport } = await traceConnection(actor, server, [
        [],
        ["-o", "custom-columns=pid,comm,dport"],
        ["-o", "json"],
      ]);
      const [columns, custom, json] = lines;
      const width = Math.max(16, shown.length);
      assertEquals(columns, [
        `${"NODE".padEnd(Math.max(16, HOSTNAME.length) + 1)}${HEADER_REST}`,
        columnsLine("C", actor.pid, shown, width, sport, port),
        columnsLine("X", actor.pid, shown, width, sport, port),
      ]);
      assertEquals(custom, [
        "PID    COMM             DPORT",
        `${String(actor.pid).padEnd(7)}${shown.padEnd(width + 1)}${port}`,
        `${String(actor.pid).padEnd(7)}${shown.padEnd(width + 1)}${port}`,
      ]);
      assertEquals(json.length, 2, json.join("\n"));
      for (const line of json) {
        assert(line.includes(`"comm":${literal}`), line);
        assertEquals(JSON.parse(line).comm, evil);
      }
      // Not one control character reached stdout.
      const all = [...columns, ...custom, ...json].join("\n");
      // deno-lint-ignore no-control-regex
      assertEquals(all.match(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]/g), null);
    }
  },
});

Deno.test({
  name: "names: UTF-8 command names, one cut by the kernel in the middle of a character",
  ignore,
  async fn() {
    // 14 ASCII bytes then "é" (2 bytes): the kernel keeps 15 bytes, half of the "é".
    for (
      const [name, shown] of [["ééé-tg", "ééé-tg"], ["tg-cut-abcdefgé", "tg-cut-abcdefg\ufffd"]]
    ) {
      await using actors = await pairOf(name);
      const [actor, server] = actors;
      const { lines, port, sport } = await traceConnection(actor, server, [
        ["-o", "custom-columns=pid,comm,sport"],
        ["-o", "json"],
      ]);
      const [custom, json] = lines;
      assertEquals(custom.slice(1), [
        `${String(actor.pid).padEnd(7)}${shown.padEnd(17)}${sport}`,
        `${String(actor.pid).padEnd(7)}${shown.padEnd(17)}${sport}`,
      ]);
      assertEquals(json.map((line) => JSON.parse(line).comm), [shown, shown]);
      assertEquals(json.map((line) => JSON.parse(line).dport), [port, port]);
    }
  },
});

Deno.test("names: an error quoting a control character is one escaped line", async () => {
  const result = await CliRun.run(["trace", "tcp", "-o", "custom-columns=pid,\x1b[2J\nx"]);
  assertEquals(result.code, 2);
  assertEquals(
    result.stderr,
    'tcpgadget: unknown column "\\x1b[2j\\nx"; valid columns: node, namespace, pod, container, t, pid, comm, ip, saddr, daddr, sport, dport, error, tid, uid, gid, mntns, netns, containerid, poduid, src, dst, dstname, timestamp\n',
  );
});

async function pairOf(comm: string): Promise<[Actor, Actor] & AsyncDisposable> {
  const actor = await Actor.start(comm);
  const server = await Actor.start("tg-names-srv");
  return Object.assign([actor, server] as [Actor, Actor], {
    async [Symbol.asyncDispose]() {
      await actor.stop();
      await server.stop();
    },
  });
}
