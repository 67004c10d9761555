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

// Per CPU where nothing is expected: a stray event still fits.
const OTHER_CPU_KIB = 256;

const LINE = /sport=(\d+) dport=(\d+) .*oldstate=(\w+) newstate=(\w+)/;

/** Records `sock:inet_sock_set_state` events that match an ftrace filter. */
export class StateChangeRecorder {
  readonly #dir: string;
  #closed = false;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Starts recording into a new trace instance with a buffer of
   * `bufferKib` on each of `cpus` (where the traced work is pinned) and
   * a small one on the others, so that memory does not grow with the
   * machine's CPU count. `filter` is in ftrace's syntax, e.g.
   * `oldstate == 8`.
   */
  static start(
    filter: string,
    options: { cpus: number[]; bufferKib: number },
  ): StateChangeRecorder {
    const root = ensureTracefs();
    const dir = `${root}/instances/tcpgadget-test-${Deno.pid}`;
    Deno.mkdirSync(dir);
    const recorder = new StateChangeRecorder(dir);
    try {
      Deno.writeTextFileSync(`${dir}/buffer_size_kb`, String(OTHER_CPU_KIB));
      for (const cpu of options.cpus) {
        Deno.writeTextFileSync(
          `${dir}/per_cpu/cpu${cpu}/buffer_size_kb`,
          String(options.bufferKib),
        );
      }
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

/**
 * The CPUs this process may run on (`Cpus_allowed_list` of
 * /proc/self/status, e.g. `0-3,8`), in increasing order.
 */
export function allowedCpus(): number[] {
  const status = Deno.readTextFileSync("/proc/self/status");
  const list = status.match(/^Cpus_allowed_list:\s*(\S+)$/m)?.[1];
  if (!list) throw new Error("no Cpus_allowed_list in /proc/self/status");
  const cpus: number[] = [];
  for (const range of list.split(",")) {
    const [first, last = first] = range.split("-").map(Number);
    for (let cpu = first; cpu <= last; cpu++) cpus.push(cpu);
  }
  return cpus;
}
