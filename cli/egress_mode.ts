/**
 * `tcpgadget egress run|watch|record`: the flags and the policy checked
 * before anything is traced, the run (egress_run.ts: COMMAND's process
 * tree; egress_watch.ts: pods, on this node or every node), and its end:
 *
 *   run, watch:  the ledger --> the outcome --> the table on stderr, --junit, --summary,
 *                GitHub Actions' annotations and step summary --> exit status 3, 4 or COMMAND's
 *   record:      the ledger --> the policy file (or NetworkPolicy, CiliumNetworkPolicy)
 *
 * @module
 */

import { errorLine, TcpgadgetError } from "../core/errors.ts";
import {
  EGRESS_HELP,
  egressExitStatus,
  type EgressFlags,
  EgressLedger,
  egressOutcome,
  egressTable,
  junitXml,
  loadPolicy,
  parseEgressFlags,
  type Policy,
  publishToGithubActions,
  recordText,
  type RunFacts,
  summaryJson,
} from "./egress/mod.ts";
import { judgeInto } from "./egress/judge.ts";
import type { LostEvents } from "./egress/lost_events.ts";
import { runTree } from "./egress_run.ts";
import { type Judge, watchCluster, watchNode } from "./egress_watch.ts";
import { LineOutput } from "./output/line_output.ts";
import { DEFAULT_IO, type TraceIo } from "./run_io.ts";
import { STOP_GRACE_MS } from "./stop_control.ts";
import type { RunningProcess } from "./egress/egress_outcome.ts";

/** What any egress run ends with, besides its ledger. */
interface Ended {
  commandStatus?: number;
  lost: LostEvents;
  stillRunning?: RunningProcess[];
  /** The run failed after it had judged (said already): status 1 if nothing else fails it. */
  failed?: boolean;
}

/** Runs `tcpgadget egress ARGS...`; returns the exit status. */
export async function egress(args: string[], io: TraceIo = DEFAULT_IO): Promise<number> {
  const [command] = args;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    console.log(EGRESS_HELP.egress);
    return command === undefined ? 2 : 0;
  }
  const flags = parseEgressFlags(args);
  if (flags.help) {
    console.log(EGRESS_HELP[flags.command]);
    return 0;
  }
  // Every mistake in the policy is found before anything runs (status 2).
  const policy = loadPolicy(flags.policy);
  const baseline = flags.baseline === undefined
    ? undefined
    : { file: flags.baseline, policy: loadPolicy([{ kind: "file", path: flags.baseline }]) };
  const ledger = new EgressLedger(policy);
  const ended = await trace(flags, ledger, io);
  if (flags.command === "record") return await record(flags, ledger, ended, io);
  return await report(flags, ledger, ended, baseline, io);
}

/** Traces what the flags select, judging every connect attempt into `ledger`. */
function trace(flags: EgressFlags, ledger: EgressLedger, io: TraceIo): Promise<Ended> {
  const judge = judgeInto(ledger);
  const rings = ringSizes();
  if (flags.tree) return runTree(flags, judge, rings, io);
  const withLabels: Judge = (event, labels) => ledger.add(event, event.dstName, labels);
  return flags.trace.cluster
    ? watchCluster(flags, withLabels, io)
    : watchNode(flags, withLabels, rings, io);
}

/**
 * `TCPGADGET_RING_BYTES`: the size of each ring of events and of the DNS
 * answers' ring (a power of two, 4096 at least). For tests, which make
 * them tiny to see lost events fail the run.
 */
function ringSizes(): { ringBufferBytes?: number; dnsRingBytes?: number } {
  const text = Deno.env.get("TCPGADGET_RING_BYTES");
  if (text === undefined) return {};
  const bytes = Number(text);
  return { ringBufferBytes: bytes, dnsRingBytes: bytes };
}

function facts(flags: EgressFlags, ended: Ended): RunFacts {
  const facts: RunFacts = {
    lostEvents: ended.lost.count,
    lostDetails: ended.lost.details,
    allowLost: flags.allowLost,
    stillRunning: ended.stillRunning ?? [],
  };
  if (ended.commandStatus !== undefined) facts.commandStatus = ended.commandStatus;
  return facts;
}

/** The reports of `run` and `watch`, and their exit status. */
async function report(
  flags: EgressFlags,
  ledger: EgressLedger,
  ended: Ended,
  baseline: { file: string; policy: Policy } | undefined,
  io: TraceIo,
): Promise<number> {
  const outcome = egressOutcome(ledger, { ...facts(flags, ended), baseline });
  Deno.stderr.writeSync(new TextEncoder().encode(egressTable(outcome)));
  let failed = ended.failed === true;
  const write = (flag: string, file: string, text: string) => {
    try {
      Deno.writeTextFileSync(file, text);
    } catch (error) {
      io.warn(`cannot write ${flag} ${file}: ${errorLine(error)}`);
      failed = true;
    }
  };
  if (flags.junit !== undefined) write("--junit", flags.junit, junitXml(outcome));
  if (flags.summary !== undefined) write("--summary", flags.summary, summaryJson(outcome));
  try {
    await publishToGithubActions(outcome, { env: Deno.env, writeCommands: writeStdout });
  } catch (error) {
    io.warn(`cannot write the GitHub Actions step summary: ${errorLine(error)}`);
    failed = true;
  }
  return outcome.exitStatus === 0 && failed ? 1 : outcome.exitStatus;
}

/** `record`: the policy file, and the exit status (4 if events were lost). */
async function record(
  flags: EgressFlags,
  ledger: EgressLedger,
  ended: Ended,
  io: TraceIo,
): Promise<number> {
  const destinations = ledger.destinations();
  const text = recordText(
    destinations,
    flags.format,
    { perWorkload: flags.perWorkload },
    [
      `Recorded by tcpgadget egress record on ${new Date().toISOString()}:`,
      `${destinations.length} destination${destinations.length === 1 ? "" : "s"}.`,
    ].join(" "),
  );
  const file = flags.recordFile!;
  if (file === "-") await writeStdout(text);
  else {
    try {
      Deno.writeTextFileSync(file, text);
    } catch (error) {
      throw new TcpgadgetError(`cannot write ${file}: ${errorLine(error)}`);
    }
  }
  const { lostEvents, allowLost, commandStatus } = facts(flags, ended);
  const where = file === "-" ? "stdout" : file;
  io.warn(
    `egress record: ${destinations.length} destination${
      destinations.length === 1 ? "" : "s"
    } written to ${where}`,
  );
  for (const p of ended.stillRunning ?? []) {
    io.warn(
      `egress record: pid ${p.pid} ${p.command} still running: later connections not recorded`,
    );
  }
  if (lostEvents > 0) {
    io.warn(
      `egress record: ${lostEvents} events lost (${ended.lost.details.join("; ")}): ` +
        (allowLost
          ? "accepted (--allow-lost)"
          : "the policy may miss what was lost (--allow-lost to accept)"),
    );
  }
  const status = egressExitStatus({
    violations: 0,
    unmetExpectations: 0,
    lostEvents,
    allowLost,
    commandStatus,
  });
  return status === 0 && ended.failed ? 1 : status;
}

/** Writes to stdout without blocking on a stalled reader (workflow commands, a record on -). */
async function writeStdout(text: string): Promise<void> {
  const output = new LineOutput(Deno.stdout);
  try {
    output.buffer.text(text);
    output.endEvent();
    output.flush();
    await output.finish(STOP_GRACE_MS);
  } finally {
    output.close();
  }
}
