/**
 * Test processes that make TCP connections on command (tcp_actor.py), each
 * with its own command name, optionally inside a network namespace and a
 * mount namespace of their own.
 *
 * @module
 */

const ACTOR = new URL("./tcp_actor.py", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
type Reply = Record<string, any>;

/** A running tcp_actor.py process. */
export class Actor {
  readonly comm: string;
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;

  private constructor(
    comm: string,
    pid: number,
    child: Deno.ChildProcess,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    lines: AsyncIterator<string>,
  ) {
    this.comm = comm;
    this.pid = pid;
    this.#child = child;
    this.#writer = writer;
    this.#lines = lines;
  }

  /**
   * Starts an actor named `comm`, in network namespace `netns` if given,
   * and in a mount namespace of its own with `unshareMount` (as a
   * container's processes are) or `binds` (files of its own: each target
   * path, such as /etc/resolv.conf, bind-mounted from its source).
   */
  static async start(
    comm: string,
    options: { netns?: string; unshareMount?: boolean; binds?: Record<string, string> } = {},
  ): Promise<Actor> {
    const binds = Object.entries(options.binds ?? {});
    const [command, ...args] = [
      ...(options.netns ? ["ip", "netns", "exec", options.netns] : []),
      ...(options.unshareMount || binds.length
        ? ["unshare", "--mount", "--propagation", "private"]
        : []),
      ...(binds.length
        ? [
          "sh",
          "-c",
          `${binds.map((_, i) => `mount --bind "$${2 * i + 2}" "$${2 * i + 1}" && `).join("")}` +
          `shift ${2 * binds.length} && exec "$@"`,
          "sh",
          ...binds.flat(),
        ]
        : []),
      "python3",
      ACTOR,
      comm,
    ];
    const child = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = child.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(splitLines())[Symbol.asyncIterator]();
    const writer = child.stdin.getWriter();
    const partial = new Actor(comm, 0, child, writer, lines);
    const { pid } = await partial.do("pid");
    return new Actor(comm, pid, child, writer, lines);
  }

  /** Sends one command and returns its JSON reply. */
  async do(command: string): Promise<Reply> {
    await this.#writer.write(new TextEncoder().encode(`${command}\n`));
    const { value, done } = await this.#lines.next();
    if (done) throw new Error(`actor ${this.comm} exited during "${command}"`);
    const reply = JSON.parse(value) as Reply;
    if (typeof reply.error === "string" && reply.error.startsWith("unknown")) {
      throw new Error(reply.error);
    }
    return reply;
  }

  /** Ends the actor and waits for it. */
  async stop(): Promise<void> {
    try {
      await this.#writer.write(new TextEncoder().encode("exit\n"));
      await this.#writer.close();
    } catch {
      // already gone
    }
    await this.#lines.return?.();
    await this.#child.status;
  }
}

function splitLines(): TransformStream<string, string> {
  let buffer = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) if (line) controller.enqueue(line);
    },
    flush(controller) {
      if (buffer) controller.enqueue(buffer);
    },
  });
}
