/**
 * The benchmark's child processes, so that none outlives it: every child
 * is registered here, and {@link Children.killAll} ends whatever is left
 * on an error or Ctrl-C. (tg-churn also asks the kernel to kill it if the
 * benchmark dies without cleaning up: PR_SET_PDEATHSIG.)
 *
 * @module
 */

/** A running child and its name, for messages. */
export interface Child {
  name: string;
  process: Deno.ChildProcess;
  /** Resolves when it exits (never rejects). */
  status: Promise<Deno.CommandStatus>;
}

/** The set of children still running. */
export class Children {
  readonly #running = new Set<Child>();

  /** Spawns and registers a child. */
  spawn(name: string, command: string, options: Deno.CommandOptions): Child {
    const process = new Deno.Command(command, options).spawn();
    const child: Child = { name, process, status: process.status };
    this.#running.add(child);
    child.status.finally(() => this.#running.delete(child));
    return child;
  }

  /**
   * Asks a child to stop with `signal` (as a user would), then kills it if
   * it has not exited within `graceMs`. Returns its exit status.
   */
  async stop(
    child: Child,
    signal: Deno.Signal = "SIGINT",
    graceMs = 15_000,
  ): Promise<Deno.CommandStatus> {
    if (!this.#running.has(child)) return child.status;
    sendSignal(child, signal);
    if (signal === "SIGKILL") return child.status;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    const result = await Promise.race([child.status, timeout]);
    clearTimeout(timer);
    if (result === "timeout") {
      console.error(`bench: ${child.name} did not stop within ${graceMs} ms; killing it`);
      sendSignal(child, "SIGKILL");
    }
    return child.status;
  }

  /** Kills every child still running and waits for them. */
  async killAll(): Promise<void> {
    const left = [...this.#running];
    for (const child of left) sendSignal(child, "SIGKILL");
    await Promise.all(left.map((child) => child.status));
  }
}

function sendSignal(child: Child, name: Deno.Signal): void {
  try {
    child.process.kill(name);
  } catch {
    // already exited
  }
}
