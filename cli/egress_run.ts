/**
 * `tcpgadget egress run -- COMMAND` (and `egress record -- COMMAND` without
 * pods): COMMAND's process tree, traced in the kernel from COMMAND's first
 * instruction. The flow:
 *
 *   attach (the tracer, filtered to the tree; DNS answers) --> start COMMAND behind the gate
 *   --> per connect of the tree: decode --> enrich (node) --> name --> judge (-o: and write)
 *   --> until COMMAND has exited, then its descendants (or the grace after COMMAND is over)
 *
 * A stop (Ctrl-C, SIGTERM) is passed on to COMMAND, and the run ends as
 * soon as COMMAND does.
 *
 * @module
 */

import { TcpgadgetError } from "../core/errors.ts";
import { NodeEnricher, type TraceEvent } from "../core/trace_event.ts";
import type { TcpTracer } from "../core/tracer.ts";
import { sleep } from "../core/sleep.ts";
import type { EgressFlags } from "./egress/egress_flags.ts";
import type { RunningProcess } from "./egress/egress_outcome.ts";
import { LostEvents } from "./egress/lost_events.ts";
import { CommandChild } from "./command_child.ts";
import { EventSources } from "./event_sources.ts";
import { nodeName } from "./node_mode.ts";
import { formatterFor } from "./output/formatter.ts";
import { LineOutput } from "./output/line_output.ts";
import { EventPipeline, writeTo } from "./pipeline.ts";
import { readEvents } from "./read_events.ts";
import { DEFAULT_IO, type TraceIo } from "./run_io.ts";
import { StopControl } from "./stop_control.ts";

/** What a traced run saw besides its events. */
export interface TracedRun {
  /** COMMAND's exit status (128 + N when killed by signal N). */
  commandStatus: number;
  lost: LostEvents;
  /** Processes of COMMAND's tree that had not exited when the run ended. */
  stillRunning: RunningProcess[];
}

/** Sizes of the kernel's rings (tests make them tiny to force losses). */
export interface RingSizes {
  ringBufferBytes?: number;
  dnsRingBytes?: number;
}

/**
 * Runs COMMAND with its process tree traced, handing each of its connect
 * attempts (named) to `judge`.
 */
export async function runTree(
  flags: EgressFlags,
  judge: (event: TraceEvent) => void,
  rings: RingSizes = {},
  io: TraceIo = DEFAULT_IO,
): Promise<TracedRun> {
  const formatter = flags.output === undefined ? undefined : formatterFor(flags.output);
  // Signals are in force from here on: before COMMAND runs, they end the run.
  using stop = new StopControl();
  await using sources = await EventSources.open({
    tracer: {
      processTree: true,
      kinds: { connect: true },
      ringBufferBytes: rings.ringBufferBytes,
    },
    names: true,
    dnsRingBytes: rings.dnsRingBytes,
    warn: io.warn,
  });
  const { tracer } = sources;
  const output = formatter ? new LineOutput(io.stdout) : undefined;
  try {
    const header = formatter?.header();
    if (header !== undefined) output?.line(header);
    output?.flush();
    const write = formatter && output ? writeTo(formatter, output) : undefined;
    // decode (in readEvents) -> enrich -> name -> judge (and write)
    const pipeline = new EventPipeline({
      enricher: new NodeEnricher(nodeName(flags.trace)),
      filter: {},
      names: sources.names,
      sink: write
        ? (event) => {
          judge(event);
          write(event);
        }
        : judge,
    });
    await sleep(0); // a signal that came while attaching is seen now
    if (stop.stopped) {
      throw new TcpgadgetError("stopped before COMMAND started", {
        exitCode: signalStatus(stop.signalName),
      });
    }
    const command = await CommandChild.start(flags.commandLine, {
      admit(pid) {
        tracer.traceProcess(pid);
        // Its processes may exit before their connections are read.
        sources.names?.rememberHostsOf(pid);
      },
      stop,
    });
    const end = new AbortController();
    const ended = treeEnd(command, tracer, stop, flags.graceSeconds * 1000)
      .finally(() => end.abort());
    await readEvents(sources, (event) => pipeline.handle(event), {
      until: end.signal,
      output,
      endWithReader: false,
      warn: io.warn,
    });
    await ended;
    const lost = new LostEvents();
    lost.addLosses(sources.losses());
    return {
      commandStatus: await command.status,
      lost,
      stillRunning: stillRunning(tracer),
    };
  } finally {
    output?.close();
  }
}

/**
 * Resolves once COMMAND has exited and then every process it started, or
 * `graceMs` after COMMAND, or at once after COMMAND when the run was
 * stopped (the stop was passed on to COMMAND: a cancelled job ends now).
 */
async function treeEnd(
  command: CommandChild,
  tracer: TcpTracer,
  stop: StopControl,
  graceMs: number,
): Promise<void> {
  await command.status;
  const deadline = performance.now() + graceMs;
  while (!stop.stopped && performance.now() < deadline && !tracer.processTreeEmpty()) {
    await sleep(50, stop.signal);
  }
}

/** The tree's processes that have not exited, with their command names. */
function stillRunning(tracer: TcpTracer): RunningProcess[] {
  return tracer.processTreeMembers().filter((member) => !member.exited).map(({ pid }) => {
    let command = "";
    try {
      command = Deno.readTextFileSync(`/proc/${pid}/comm`).replace(/\n$/, "");
    } catch {
      // exited meanwhile
    }
    return { pid, command };
  }).sort((a, b) => a.pid - b.pid);
}

/** The status of a run ended by `signal` before it ran anything: 128 + its number. */
function signalStatus(signal: Deno.Signal | undefined): number {
  return 128 + (signal === "SIGTERM" ? 15 : signal === "SIGHUP" ? 1 : 2);
}
