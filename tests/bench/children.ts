/**
 * The benchmark's child processes, so that none outlives it: every child
 * is registered here, and {@link Children.killAll} ends whatever is left
 * on an error or Ctrl-C. (tg-churn also asks the kernel to kill it if the
 * benchmark dies without cleaning up, and tg-tap the tracer it runs if
 * tg-tap dies: PR_SET_PDEATHSIG.)
 *
 * @module
 */

/** A running child and its name, for messages. */
export interface Child {
  name: string;
  process: Deno.ChildProcess;
  /** Resolves when it exits (never rejects). */
  status: Promise<Deno.CommandStatus>;
  /**
   * The process that signals are for, if not the child itself: the tracer
   * that tg-tap runs (tap.c), while it runs. Killed, tg-tap sees it die,
   * reaps it and exits (and if tg-tap dies first, the kernel kills the
   * tracer: PR_SET_PDEATHSIG).
   */
  signalPid?: number;
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
    if (signal === "SIGKILL") return await kill(child);
    sendSignal(child, signal);
    if (await exitsWithin(child, graceMs)) return child.status;
    console.error(`bench: ${child.name} did not stop within ${graceMs} ms; killing it`);
    return await kill(child);
  }

  /** Kills every child still running and waits for them. */
  async killAll(): Promise<void> {
    await Promise.all([...this.#running].map(kill));
  }
}

/** How long tg-tap has to reap its killed tracer and exit before it is killed too. */
const REAP_MS = 2_000;

/**
 * Kills a child. One that runs a process for us (tg-tap) sees it die and
 * exits, having reaped it: killed at once, it would leave the process a
 * zombie for init to reap (which, in a container, it may never do).
 */
async function kill(child: Child): Promise<Deno.CommandStatus> {
  if (child.signalPid !== undefined) {
    sendSignal(child, "SIGKILL");
    if (await exitsWithin(child, REAP_MS)) return child.status;
  }
  try {
    child.process.kill("SIGKILL");
  } catch {
    // already exited
  }
  return await child.status;
}

async function exitsWithin(child: Child, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  const result = await Promise.race([child.status, timeout]);
  clearTimeout(timer);
  return result !== "timeout";
}

/** Sends a signal to the process a child runs for us (if any), else to the child. */
function sendSignal(child: Child, name: Deno.Signal): void {
  try {
    if (child.signalPid !== undefined) Deno.kill(child.signalPid, name);
    else child.process.kill(name);
  } catch {
    // already exited
  }
}
