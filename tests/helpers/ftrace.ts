/**
 * The kernel's own record of TCP state changes, through ftrace (no BPF):
 * what a tracer on the `sock:inet_sock_set_state` tracepoint could have
 * seen at most. In a trace instance of its own, so the global buffer is
 * left alone.
 */

import { ensureTracefs } from "../../core/system.ts";

/** One state change as ftrace printed it. */
export interface StateChange {
  sport: number;
  dport: number;
  oldstate: string;
  newstate: string;
}

const LINE = /sport=(\d+) dport=(\d+) .*oldstate=(\w+) newstate=(\w+)/;

/** Records `sock:inet_sock_set_state` events that match an ftrace filter. */
export class StateChangeRecorder {
  readonly #dir: string;
  #closed = false;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Starts recording into a new trace instance with `bufferKib` per CPU.
   * `filter` is in ftrace's syntax, e.g. `oldstate == 8`.
   */
  static start(filter: string, bufferKib: number): StateChangeRecorder {
    const root = ensureTracefs();
    const dir = `${root}/instances/tcpgadget-test-${Deno.pid}`;
    Deno.mkdirSync(dir);
    const recorder = new StateChangeRecorder(dir);
    try {
      Deno.writeTextFileSync(`${dir}/buffer_size_kb`, String(bufferKib));
      const event = `${dir}/events/sock/inet_sock_set_state`;
      Deno.writeTextFileSync(`${event}/filter`, filter);
      Deno.writeTextFileSync(`${event}/enable`, "1");
    } catch (error) {
      recorder.close();
      throw error;
    }
    return recorder;
  }

  /** Everything recorded since the last call; throws if the buffer overflowed. */
  take(): StateChange[] {
    const overruns =
      [...Deno.readDirSync(`${this.#dir}/per_cpu`)].map((cpu) =>
        Deno.readTextFileSync(`${this.#dir}/per_cpu/${cpu.name}/stats`)
      ).join("").match(/^overrun: (\d+)$/gm)?.filter((line) => !line.endsWith(" 0")) ?? [];
    if (overruns.length > 0) throw new Error(`ftrace buffer overflowed: ${overruns}`);
    const text = Deno.readTextFileSync(`${this.#dir}/trace`);
    Deno.writeTextFileSync(`${this.#dir}/trace`, "");
    const changes: StateChange[] = [];
    for (const line of text.split("\n")) {
      const match = line.match(LINE);
      if (match) {
        changes.push({
          sport: Number(match[1]),
          dport: Number(match[2]),
          oldstate: match[3],
          newstate: match[4],
        });
      }
    }
    return changes;
  }

  /** Stops recording and removes the instance. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      Deno.writeTextFileSync(`${this.#dir}/events/sock/inet_sock_set_state/enable`, "0");
    } finally {
      Deno.removeSync(this.#dir);
    }
  }
}
