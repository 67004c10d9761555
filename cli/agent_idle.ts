/**
 * `tcpgadget agent idle SECONDS`: internal, the main process of an agent
 * pod whose image holds tcpgadget alone (`--agent-image`), which has no
 * `sleep`. It idles until SECONDS pass or the pod is stopped, while cluster
 * mode runs the tracer beside it through the exec API.
 *
 * @module
 */

import { UsageError } from "../core/errors.ts";
import { sleep } from "../core/sleep.ts";

/** Runs `agent ARGS`; returns the exit status. */
export async function agent(args: string[]): Promise<number> {
  const [command, seconds, ...rest] = args;
  if (command !== "idle" || rest.length > 0 || !/^\d+$/.test(seconds ?? "")) {
    throw new UsageError(
      "usage: tcpgadget agent idle SECONDS (internal: the agent pod's idle process)",
    );
  }
  const stop = new AbortController();
  const signals = ["SIGTERM", "SIGINT"] as const;
  const onSignal = () => stop.abort();
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  try {
    // In steps: a timer of more than 2^31 - 1 ms (24.8 days) fires at once.
    const end = Date.now() + Number(seconds) * 1000;
    while (!stop.signal.aborted && Date.now() < end) {
      await sleep(Math.min(end - Date.now(), 86_400_000), stop.signal);
    }
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  }
  return 0;
}
