/**
 * How a run is told to stop: Ctrl-C, SIGTERM, SIGHUP, `--timeout`, or the
 * run itself (the reader of its output gone, an error). One owner for
 * every run mode, in force from the run's first step, so that a stop is
 * honoured however far the run has got.
 *
 * @module
 */

/** The signals that end a run quietly. */
export const STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * The longest `--timeout`: 365 days. Timers are chained (one JavaScript
 * timer lasts at most 2^31 - 1 ms, 24.8 days), so any length would do;
 * the bound keeps a typo (`--timeout 1e30`) from meaning forever, and keeps
 * cluster mode's pod deadline (`--timeout` + 600 s) a sane number.
 */
export const MAX_TIMEOUT_SECONDS = 365 * 24 * 3600;

/**
 * How long a stop waits for a slow reader of stdout to take what is
 * queued; what it has not taken by then is reported as not written.
 */
export const STOP_GRACE_MS = 500;

// The longest single timer: setTimeout takes a signed 32-bit delay, and
// longer ones fire at once (TimeoutOverflowWarning).
const TIMER_LIMIT_MS = 2 ** 31 - 1;

/** Options of {@link StopControl}. */
export interface StopOptions {
  /** Signals that stop the run (default {@link STOP_SIGNALS}; [] for none). */
  signals?: readonly Deno.Signal[];
  /** The longest single timer, in ms (tests make it short to see timers chained). */
  timerLimitMs?: number;
}

/**
 * The stop of one run: its signal handlers and timeout, and an
 * {@link AbortSignal} that aborts at the first stop.
 *
 * @example
 * ```ts
 * import { StopControl } from "./stop_control.ts";
 * import assert from "node:assert/strict";
 * // A timeout of 0.05 s made of timers of at most 20 ms each.
 * using stop = new StopControl({ signals: [], timerLimitMs: 20 });
 * stop.startTimeout(0.05);
 * const reason = await stop.race(new Promise<string>(() => {}));
 * assert.equal(reason, undefined);
 * assert.equal(stop.reason, "timeout");
 * ```
 */
export class StopControl implements Disposable {
  readonly #controller = new AbortController();
  readonly #signals: readonly Deno.Signal[];
  readonly #timerLimitMs: number;
  readonly #stopped: Promise<void>;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #reason: "signal" | "timeout" | "run" | undefined;
  #signalName: Deno.Signal | undefined;
  readonly #listeners = new Map<Deno.Signal, () => void>();
  #onSecondSignal: (() => void) | undefined;
  #disposed = false;

  constructor(options: StopOptions = {}) {
    this.#signals = options.signals ?? STOP_SIGNALS;
    this.#timerLimitMs = options.timerLimitMs ?? TIMER_LIMIT_MS;
    this.#stopped = new Promise((resolve) =>
      this.signal.addEventListener("abort", () => resolve(), { once: true })
    );
    for (const name of this.#signals) {
      const listener = () => this.#onSignal(name);
      this.#listeners.set(name, listener);
      Deno.addSignalListener(name, listener);
    }
  }

  /** Aborts at the first stop. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether the run has been told to stop. */
  get stopped(): boolean {
    return this.signal.aborted;
  }

  /** What stopped it first: a signal, the timeout, or the run itself. */
  get reason(): "signal" | "timeout" | "run" | undefined {
    return this.#reason;
  }

  /** The signal that stopped the run, if one did (egress passes it on to COMMAND). */
  get signalName(): Deno.Signal | undefined {
    return this.#signalName;
  }

  /** Resolves at the first stop. */
  get whenStopped(): Promise<void> {
    return this.#stopped;
  }

  /** Stops the run (the reader of the output went away, an error). */
  stop(): void {
    this.#stop("run");
  }

  /**
   * Stops the run `seconds` from now (at most {@link MAX_TIMEOUT_SECONDS}
   * apart from tests), with as many timers in a row as that takes.
   */
  startTimeout(seconds: number): void {
    clearTimeout(this.#timer);
    const deadline = performance.now() + seconds * 1000;
    const arm = () => {
      const left = deadline - performance.now();
      if (left <= 0) return this.#stop("timeout");
      this.#timer = setTimeout(arm, Math.min(Math.ceil(left), this.#timerLimitMs));
    };
    arm();
  }

  /**
   * What a signal does once the run is stopping (cluster mode: exit at once,
   * leaving the pods); by default, nothing.
   */
  onSecondSignal(handler: (() => void) | undefined): void {
    this.#onSecondSignal = handler;
  }

  /** `promise`'s value, or undefined as soon as the run is stopped (at once if it is). */
  race<T>(promise: Promise<T>): Promise<T | undefined> {
    if (this.stopped) {
      promise.catch(() => {});
      return Promise.resolve(undefined);
    }
    return Promise.race([promise, this.#stopped.then(() => undefined)]);
  }

  /** Removes the signal handlers and the timer. */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    clearTimeout(this.#timer);
    for (const [name, listener] of this.#listeners) Deno.removeSignalListener(name, listener);
  }

  #onSignal(name: Deno.Signal): void {
    if (this.stopped) return this.#onSecondSignal?.();
    this.#signalName = name;
    this.#stop("signal");
  }

  #stop(reason: "signal" | "timeout" | "run"): void {
    if (this.stopped) return;
    this.#reason = reason;
    clearTimeout(this.#timer);
    this.#controller.abort();
  }
}
