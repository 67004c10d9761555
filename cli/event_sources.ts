/**
 * What a run on this host reads from the kernel: the TCP tracer and, when
 * destinations are named (`trace tcp --names`, `egress`), the DNS answers
 * it names them from (core/dns_snooper.ts, core/destination_name.ts). Both
 * are opened, counted for losses, and closed together.
 *
 * @module
 */

import { TcpTracer, type TracerOptions } from "../core/tracer.ts";
import { DnsSnooper } from "../core/dns_snooper.ts";
import { DestinationNames } from "../core/destination_name.ts";
import { HostsFiles } from "../core/hosts_file.ts";
import { errorLine, UnsupportedError } from "../core/errors.ts";

/** What was lost so far: events the run cannot vouch for. */
export interface Losses {
  /** Events the kernel could not queue (ring buffer full). */
  ringFull: number;
  /** Runs of the tracer's programs the kernel skipped and nothing rescued: each may have been an event. */
  skippedRuns: number;
  /** Processes of the traced tree the kernel could not add: their events were not seen. */
  untracedProcesses: number;
  /** DNS answers the kernel could not queue: names that may be unknown. */
  dnsAnswersLost: number;
  /** DNS answers too long to read (over 8 KiB): names that may be unknown. */
  dnsAnswersCut: number;
}

/** Options of {@link EventSources.open}. */
export interface EventSourcesOptions {
  tracer: TracerOptions;
  /** Name destinations: observe DNS answers (and read hosts files). */
  names: boolean;
  /** Where processes are, to read their hosts files (default /proc). */
  proc?: string;
  /** Size of the DNS answers' ring (default: the snooper's, 1 MiB). */
  dnsRingBytes?: number;
  warn(message: string): void;
}

/**
 * The tracer, and the names of destinations if asked for.
 *
 * @example
 * ```ts ignore
 * await using sources = await EventSources.open({ tracer: {}, names: true, warn: console.warn });
 * sources.tracer.drain((event) => console.log(sources.names?.nameOf(event as TraceEvent)));
 * ```
 */
export class EventSources implements AsyncDisposable {
  readonly tracer: TcpTracer;
  /** The names of destinations, with `names`. */
  readonly names: DestinationNames | undefined;
  readonly #snooper: DnsSnooper | undefined;
  readonly #warn: (message: string) => void;
  #dnsLostReported = 0;
  #dnsCutReported = 0;

  private constructor(
    tracer: TcpTracer,
    names: DestinationNames | undefined,
    snooper: DnsSnooper | undefined,
    warn: (message: string) => void,
  ) {
    this.tracer = tracer;
    this.names = names;
    this.#snooper = snooper;
    this.#warn = warn;
  }

  /**
   * Opens the tracer, then the DNS snooper (so that both are on the
   * tracer's clock). Where DNS answers cannot be observed (Linux before
   * 6.2, no cgroup v2 hierarchy), says so and names from hosts files only.
   */
  static async open(options: EventSourcesOptions): Promise<EventSources> {
    const tracer = TcpTracer.open({ onWarning: options.warn, ...options.tracer });
    if (!options.names) return new EventSources(tracer, undefined, undefined, options.warn);
    let snooper: DnsSnooper | undefined;
    try {
      snooper = DnsSnooper.open({
        bootToRealtimeNs: tracer.bootToRealtimeNs,
        ringBytes: options.dnsRingBytes,
      });
    } catch (error) {
      if (!(error instanceof UnsupportedError)) {
        await tracer.close();
        throw error;
      }
      options.warn(`destinations are named from hosts files only: ${errorLine(error)}`);
    }
    const names = new DestinationNames({
      dns: snooper,
      hosts: new HostsFiles({ proc: options.proc }),
    });
    return new EventSources(tracer, names, snooper, options.warn);
  }

  /**
   * Warns of what was lost since the last report (the tracer's events,
   * DNS answers); `final` also checks the runs the kernel skipped.
   */
  reportLost(final = false): void {
    this.tracer.reportLost(final);
    const { dnsAnswersLost, dnsAnswersCut } = this.#dnsLosses();
    if (dnsAnswersLost > this.#dnsLostReported) {
      const n = dnsAnswersLost - this.#dnsLostReported;
      this.#warn(`lost ${n} DNS answer${n === 1 ? "" : "s"} (ring buffer full)`);
      this.#dnsLostReported = dnsAnswersLost;
    }
    if (dnsAnswersCut > this.#dnsCutReported) {
      const n = dnsAnswersCut - this.#dnsCutReported;
      this.#warn(`lost ${n} DNS answer${n === 1 ? "" : "s"} (longer than 8 KiB)`);
      this.#dnsCutReported = dnsAnswersCut;
    }
  }

  /** Everything lost so far. */
  losses(): Losses {
    const skipped = this.tracer.unhandledRuns();
    return {
      ringFull: Number(this.tracer.lostEvents()),
      skippedRuns: skipped > 0n ? Number(skipped) : 0,
      untracedProcesses: Number(this.tracer.untracedProcesses()),
      ...this.#dnsLosses(),
    };
  }

  #dnsLosses(): Pick<Losses, "dnsAnswersLost" | "dnsAnswersCut"> {
    return {
      dnsAnswersLost: Number(this.#snooper?.lostAnswers() ?? 0n),
      dnsAnswersCut: Number(this.#snooper?.cutAnswers() ?? 0n),
    };
  }

  /** Detaches and frees everything (the last losses are reported first). */
  async close(): Promise<void> {
    try {
      this.reportLost(true);
    } catch {
      // best effort while closing
    }
    await this.#snooper?.close();
    await this.tracer.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
