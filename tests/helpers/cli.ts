/**
 * Runs the tcpgadget command line as a child process, as a user would:
 * `deno run -A mod.ts ...`, optionally behind a wrapper command (unshare,
 * setpriv) or as a compiled binary.
 *
 * @module
 */

const MOD = new URL("../../mod.ts", import.meta.url).pathname;

/** The command that runs tcpgadget: a compiled binary if set, else deno + mod.ts. */
export function tcpgadgetCommand(): string[] {
  const binary = Deno.env.get("TCPGADGET_TEST_BINARY");
  return binary ? [binary] : [Deno.execPath(), "run", "-A", MOD];
}

/** Options of {@link CliRun.start}. */
export interface CliOptions {
  /** Words put before the tcpgadget command (e.g. ["unshare", "-m", "--"]). */
  wrapper?: string[];
  env?: Record<string, string>;
}

/** A running tcpgadget process whose output is collected. */
export class CliRun {
  readonly child: Deno.ChildProcess;
  readonly stdoutLines: string[] = [];
  stderr = "";
  readonly #stdoutDone: Promise<void>;
  readonly #stderrDone: Promise<void>;
  #stdoutReader: ReadableStreamDefaultReader<string> | undefined;
  #waiters: (() => void)[] = [];

  private constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.#stdoutDone = this.#readStdout();
    this.#stderrDone = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.stderr += chunk;
        this.#notify();
      }
    })();
  }

  /** Starts `tcpgadget <args>`. */
  static start(args: string[], options: CliOptions = {}): CliRun {
    const [command, ...rest] = [...(options.wrapper ?? []), ...tcpgadgetCommand(), ...args];
    const child = new Deno.Command(command, {
      args: rest,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: options.env,
    }).spawn();
    return new CliRun(child);
  }

  /** Runs to completion and returns the exit code with all output. */
  static async run(
    args: string[],
    options: CliOptions = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const [command, ...rest] = [...(options.wrapper ?? []), ...tcpgadgetCommand(), ...args];
    const output = await new Deno.Command(command, {
      args: rest,
      stdin: "null",
      env: options.env,
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  }

  get pid(): number {
    return this.child.pid;
  }

  async #readStdout(): Promise<void> {
    this.#stdoutReader = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      while (true) {
        const { value, done } = await this.#stdoutReader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split("\n");
        buffer = lines.pop() ?? "";
        this.stdoutLines.push(...lines);
        this.#notify();
      }
    } catch {
      // cancelled by closeStdout()
    }
    if (buffer) this.stdoutLines.push(buffer);
    this.#notify();
  }

  #notify(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /** Waits until `condition` holds on the collected output, or fails after `timeoutMs`. */
  async waitFor(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!condition()) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        throw new Error(
          `timed out waiting for ${what}; stdout: ${
            this.stdoutLines.join("\\n")
          }; stderr: ${this.stderr}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, Math.min(remaining, 100));
      });
      clearTimeout(timer);
    }
  }

  /** Waits for the sign that the programs are attached (header or stderr line). */
  async ready(): Promise<void> {
    await this.waitFor(
      () => this.stdoutLines.length > 0 || this.stderr.includes("tracing TCP connections"),
      "the tracer to attach",
    );
  }

  /** Closes our end of its stdout pipe, like `| head` exiting. */
  async closeStdout(): Promise<void> {
    await this.#stdoutReader?.cancel();
  }

  /** Waits for exit (killing it after `timeoutMs`) and returns its status. */
  async finish(timeoutMs = 15_000): Promise<Deno.CommandStatus> {
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      this.child.kill("SIGKILL");
    }, timeoutMs);
    const status = await this.child.status;
    clearTimeout(timer);
    await this.#stdoutDone;
    await this.#stderrDone;
    if (killed) throw new Error(`tcpgadget did not exit within ${timeoutMs} ms`);
    return status;
  }

  /** JSON objects printed on stdout. */
  json(): Record<string, unknown>[] {
    return this.stdoutLines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
  }
}

/**
 * Wrapper words that run a shell snippet in a private mount namespace,
 * then the command that follows (mounts made there vanish with it).
 * With `orExit`, a failing snippet ends the command before it starts.
 */
export function inPrivateMounts(setup: string, { orExit = true } = {}): string[] {
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    `${setup}${orExit ? " &&" : ";"} exec "$@"`,
    "sh",
  ];
}
