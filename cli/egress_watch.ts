/**
 * `tcpgadget egress watch` (and `egress record` of pods, or for a time):
 * the selected pods and containers, or this host, judged from each one's
 * first connection, pods that start during the watch included. The flow:
 *
 *   node mode:    attach node mode's stages (container filter in the kernel, DNS answers)
 *                 --> [start COMMAND, untraced] --> decode --> enrich --> filter --> name
 *                 --> judge (-o: and write)
 *   cluster mode: cluster mode's agents, each naming destinations on its node (--names)
 *                 --> decode --> enrich --> filter --> judge on this machine
 *
 * until --timeout, or until COMMAND ends (a stop is passed on to it).
 *
 * @module
 */

import { TcpgadgetError } from "../core/errors.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import type { EgressFlags } from "./egress/egress_flags.ts";
import { LostEvents } from "./egress/lost_events.ts";
import { CommandChild } from "./command_child.ts";
import type { RingSizes } from "./egress_run.ts";
import { checkSelector, openNodeStages } from "./node_mode.ts";
import { formatterFor } from "./output/formatter.ts";
import { LineOutput } from "./output/line_output.ts";
import { EventPipeline, writeTo } from "./pipeline.ts";
import { readEvents } from "./read_events.ts";
import { DEFAULT_IO, type TraceIo } from "./run_io.ts";
import { StopControl } from "./stop_control.ts";

/** How long COMMAND may take to end after the watch was stopped, before it is killed. */
const COMMAND_PATIENCE_MS = 1000;

/** What a watch saw besides its events. */
export interface WatchRun {
  /** COMMAND's exit status; undefined without COMMAND. */
  commandStatus?: number;
  lost: LostEvents;
  /** The run failed once it had judged (cluster mode: agent pods left behind, said above). */
  failed?: boolean;
}

/** The judge: each event with its pod's labels (from the API, when known). */
export type Judge = (event: TraceEvent, labels: Record<string, string> | undefined) => void;

/** Watches this host's pods (node mode), judging each connect attempt with `judge`. */
export async function watchNode(
  flags: EgressFlags,
  judge: Judge,
  rings: RingSizes = {},
  io: TraceIo = DEFAULT_IO,
): Promise<WatchRun> {
  const formatter = flags.output === undefined ? undefined : formatterFor(flags.output);
  checkSelector(flags.trace);
  using stop = new StopControl();
  if (flags.timeout !== undefined) stop.startTimeout(flags.timeout);
  const lost = new LostEvents();
  await using stages = await openNodeStages(flags.trace, io, stop, {
    tracer: { ringBufferBytes: rings.ringBufferBytes },
    dnsRingBytes: rings.dnsRingBytes,
  });
  if (stages === undefined) return { lost };
  const output = formatter ? new LineOutput(io.stdout) : undefined;
  try {
    // Printed once the programs are attached, so a script can wait for it.
    const header = formatter?.header();
    if (header !== undefined) output?.line(header);
    else io.warn(`tracing TCP connections (attached via ${stages.sources.tracer.attachMethod})`);
    output?.flush();
    const write = formatter && output ? writeTo(formatter, output) : undefined;
    // decode (in readEvents) -> enrich -> filter -> name -> judge (and write)
    const pipeline = new EventPipeline({
      ...stages,
      names: stages.sources.names,
      sink: (event) => {
        judge(event, stages.labelsOf(event));
        write?.(event);
      },
    });
    const command = flags.commandLine.length > 0
      ? await CommandChild.start(flags.commandLine, { stop })
      : undefined;
    // COMMAND's end ends the watch.
    command?.status.then(() => stop.stop());
    await readEvents(stages.sources, stages.deciding((event) => pipeline.handle(event)), {
      until: stop.signal,
      output,
      endWithReader: false,
      warn: io.warn,
    });
    lost.addLosses(stages.sources.losses());
    return { commandStatus: await command?.endWithin(COMMAND_PATIENCE_MS), lost };
  } finally {
    output?.close();
  }
}

/**
 * Watches the pods of every node (cluster mode), judging here what each
 * node's agent saw and named; COMMAND starts once every node traces.
 */
export async function watchCluster(
  flags: EgressFlags,
  judge: Judge,
  io: TraceIo = DEFAULT_IO,
): Promise<WatchRun> {
  const { traceCluster } = await import("./cluster_mode.ts");
  const lost = new LostEvents();
  // What the nodes lose, they say on stderr, as node mode does.
  const nodeIo: TraceIo = {
    stdout: io.stdout,
    warn(message) {
      const node = message.match(/^node (\S+): (.*)$/);
      if (node) lost.addNodeWarning(node[1], node[2]);
      io.warn(message);
    },
  };
  // Without -o, the agents' JSON is read but nothing is written.
  const trace = { ...flags.trace, output: flags.output ?? "json" };
  let command: CommandChild | undefined;
  let commandError: unknown;
  const stop = new AbortController();
  const status = await traceCluster(trace, {
    main: new URL("../mod.ts", import.meta.url),
    judge: {
      sink: judge,
      write: flags.output !== undefined,
      nodeFailed: (node) => lost.addNodeFailure(node),
      tracing() {
        if (flags.commandLine.length === 0) return undefined;
        return startCommand(flags.commandLine, stop.signal).then((started) => {
          command = started;
          return started.status;
        }, (error) => {
          commandError = error;
        });
      },
    },
  }, nodeIo);
  stop.abort();
  if (commandError !== undefined) throw commandError;
  if (flags.commandLine.length > 0 && command === undefined) {
    throw new TcpgadgetError("stopped before every node traced: COMMAND did not run", {
      exitCode: 130,
    });
  }
  const commandStatus = await command?.endWithin(COMMAND_PATIENCE_MS);
  return { commandStatus, lost, failed: status !== 0 };
}

/**
 * Starts COMMAND for a cluster-mode watch: signals are passed on to it (a
 * StopControl of its own, beside cluster mode's), until `done` aborts.
 */
async function startCommand(argv: string[], done: AbortSignal): Promise<CommandChild> {
  const stop = new StopControl();
  done.addEventListener("abort", () => stop[Symbol.dispose](), { once: true });
  try {
    return await CommandChild.start(argv, { stop });
  } catch (error) {
    stop[Symbol.dispose]();
    throw error;
  }
}
