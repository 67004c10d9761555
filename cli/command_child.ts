/**
 * COMMAND of `egress run|watch|record -- COMMAND`: started behind the gate
 * (core/gated_spawn.ts) once tracing is attached, with its own stdin,
 * stdout and stderr; its exit status as a shell gives it; and the run's
 * stops passed on to it: a CI runner cancels a job with SIGINT or SIGTERM,
 * and COMMAND must get it (a second signal kills it).
 *
 * @module
 */

import { gatedSpawn } from "../core/gated_spawn.ts";
import { sleep } from "../core/sleep.ts";
import type { StopControl } from "./stop_control.ts";

/** Options of {@link CommandChild.start}. */
export interface CommandOptions {
  /** Called with COMMAND's pid before it runs (into the traced tree); none: admitted at once. */
  admit?(pid: number): void;
  /** The run's stops: a signal is passed on, a second one kills COMMAND. */
  stop: StopControl;
}

/**
 * A running COMMAND.
 *
 * @example
 * ```ts
 * import { CommandChild } from "./command_child.ts";
 * import { StopControl } from "./stop_control.ts";
 * import assert from "node:assert/strict";
 * using stop = new StopControl({ signals: [] });
 * const command = await CommandChild.start(["sh", "-c", "exit 7"], { stop });
 * assert.equal(await command.status, 7);
 * assert.equal(command.exited, true);
 * ```
 */
export class CommandChild {
  readonly pid: number;
  /** COMMAND's exit status: its code, or 128 + N when killed by signal N. */
  readonly status: Promise<number>;
  #exited = false;
  readonly #child: Deno.ChildProcess;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.pid = child.pid;
    this.status = child.status.then((status) => {
      this.#exited = true;
      return status.code;
    });
  }

  /**
   * Starts COMMAND (argv). Throws a one-line error, with a shell's status
   * (127, 126), when it cannot be run.
   */
  static async start(argv: string[], options: CommandOptions): Promise<CommandChild> {
    const child = new CommandChild(
      await gatedSpawn(argv, { admit: (pid) => options.admit?.(pid) }),
    );
    const { stop } = options;
    const passOn = () => {
      if (stop.signalName !== undefined) child.kill(stop.signalName);
    };
    if (stop.stopped) passOn();
    else stop.signal.addEventListener("abort", passOn, { once: true });
    stop.onSecondSignal(() => child.kill("SIGKILL"));
    return child;
  }

  /** Whether COMMAND has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Sends COMMAND a signal (nothing if it has exited). */
  kill(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // exited meanwhile
    }
  }

  /**
   * COMMAND's status once it exits, waiting at most `ms`: then it is
   * killed (SIGKILL), and its status is that of a killed process.
   */
  async endWithin(ms: number): Promise<number> {
    const patience = new AbortController();
    const exited = await Promise.race([
      this.status.then(() => true),
      sleep(ms, patience.signal).then(() => false),
    ]);
    patience.abort();
    if (!exited) this.kill("SIGKILL");
    return await this.status;
  }
}
