/**
 * One node's agent in cluster mode: its pod (created, waited for), the
 * upload of tcpgadget into it, and the event stream of node mode running
 * there, reopened when it drops. What the agent prints comes out as lines
 * (events on stdout, diagnostics on stderr) through {@link AgentListener};
 * what the lines mean is the caller's business.
 *
 * @module
 */

import type * as k8s from "@kubernetes/client-node";
import { errorLine, TcpgadgetError } from "../../core/errors.ts";
import { LineSplitter } from "../../core/line_splitter.ts";
import { sleep } from "../../core/sleep.ts";
import { agentPod, agentPodName } from "./agent_pod.ts";
import { httpStatus, NoAnswerError } from "./api_errors.ts";
import { ExecDroppedError, execInPod, type ExecTarget } from "./exec.ts";
import type { KubeClient } from "./kube_client.ts";
import type { CopyTarget } from "./payload_distribution.ts";
import { podFailure } from "./pod_failure.ts";

/** How long a pod may take to start (pull its image, ...). */
const POD_START_TIMEOUT_MS = 180_000;
/** Reconnects of a node's event stream in a row before the node is given up. */
const RECONNECTS = 3;
/**
 * Pauses before each reconnect in a row: a kubelet that restarts (an
 * upgrade) does not serve exec for a moment (0.5 s for the test cluster's,
 * on a quiet machine; longer on a busy node), and the three cover 21 s.
 */
const RECONNECT_PAUSES_MS = [1000, 4000, 16000];
/** The line node mode prints on stderr once its programs are attached. */
const TRACING_LINE = /^(tcpgadget: )?tracing TCP connections/;

/** What the sessions of one run share. */
export interface AgentRun {
  client: KubeClient;
  /** Namespace of the agent pods. */
  namespace: string;
  runId: string;
  image: string;
  /** Where `image` holds tcpgadget (--agent-image); none: it is uploaded. */
  program?: string;
  /** Secrets the pods pull `image` with. */
  imagePullSecrets?: string[];
  /** activeDeadlineSeconds of the pods: the most they live. */
  deadlineSeconds: number;
  /** The node-mode arguments the agent on `node` runs with. */
  agentArgs(node: string): string[];
}

/** How tcpgadget gets into the pods, and how it is run there. */
export interface ProgramDelivery {
  /** Puts tcpgadget into the pod (payload_distribution.ts); nothing to do if its image holds it. */
  deliver(target: CopyTarget, signal: AbortSignal): Promise<void>;
  /** The command line that runs `tcpgadget <args>` in the pod. */
  command(args: string[]): string[];
}

/**
 * The delivery of an image that holds tcpgadget at `path` (--agent-image):
 * nothing to copy.
 */
export function programInImage(path: string): ProgramDelivery {
  return { deliver: () => Promise.resolve(), command: (args) => [path, ...args] };
}

/** What a session reports, each call naming its session. */
export interface AgentListener {
  /** A line of the agent's standard output: one event (JSON). */
  line(session: AgentSession, line: string): void;
  /** A diagnostic for the user (without the node's name). */
  warn(session: AgentSession, message: string): void;
  /** The session became ready (its agent traces) or failed. */
  settled(session: AgentSession): void;
}

/**
 * One node's agent.
 *
 * @example
 * ```ts ignore
 * const session = new AgentSession(run, listener, "worker-1", 0);
 * await session.create();
 * await session.run(delivery, signal); // until signal aborts, or the node fails
 * ```
 */
export class AgentSession {
  readonly node: string;
  readonly pod: string;
  readonly index: number;
  /** The agent traces (it said so once). */
  ready = false;
  /** The node was given up (the reason was warned). */
  failed = false;
  /** The pod was created (and so must be deleted). */
  created = false;
  readonly #run: AgentRun;
  readonly #listener: AgentListener;

  constructor(run: AgentRun, listener: AgentListener, node: string, index: number) {
    this.#run = run;
    this.#listener = listener;
    this.node = node;
    this.index = index;
    this.pod = agentPodName(run.runId, index);
  }

  get #target(): ExecTarget {
    return {
      kubeconfig: this.#run.client.kubeconfig,
      namespace: this.#run.namespace,
      pod: this.pod,
      container: "agent",
    };
  }

  #warn(message: string): void {
    this.#listener.warn(this, message);
  }

  /** Creates the pod (an error here is the same on every node: it ends the run). */
  async create(): Promise<void> {
    const { client, namespace, runId, image, program, deadlineSeconds, imagePullSecrets } =
      this.#run;
    try {
      await client.call(
        { verb: "create", resource: "pods", namespace },
        (core) =>
          core.createNamespacedPod({
            namespace,
            body: agentPod({
              runId,
              index: this.index,
              node: this.node,
              namespace,
              image,
              program,
              deadlineSeconds,
              imagePullSecrets,
            }),
          }),
      );
    } catch (error) {
      if (httpStatus((error as Error).cause) === 404) {
        throw new TcpgadgetError(
          `namespace "${namespace}" does not exist (the agent pods' namespace: --agent-namespace, else the context's)`,
        );
      }
      throw error;
    }
    this.created = true;
  }

  /**
   * Waits for the pod, gets tcpgadget into it (`delivery`), and streams
   * events until `signal` aborts; a failure of this node is warned and
   * marks it failed.
   */
  async run(delivery: ProgramDelivery, signal: AbortSignal): Promise<void> {
    try {
      const pod = await this.#waitRunning(signal);
      if (signal.aborted || !pod) return;
      await delivery.deliver(
        { node: this.node, exec: this.#target, podIP: pod.status?.podIP },
        signal,
      );
      if (signal.aborted) return;
      // Reconnects in a row: a stream that got going resets the count.
      let drops = 0;
      while (!signal.aborted) {
        let started = false;
        let dropped: ExecDroppedError;
        try {
          const { exitCode } = await this.#stream(delivery, signal, () => started = true);
          if (signal.aborted) return;
          if (exitCode !== 0) {
            throw new TcpgadgetError(`the tracer in the pod exited with status ${exitCode}`);
          }
          // The tracer ends with 0 only when stopped, and only we stop it:
          // a stream whose API server lost its kubelet (a kubelet restart)
          // ends with Success while the tracer runs on.
          dropped = new ExecDroppedError(
            "the event stream ended with status 0 while the tracer was not stopped",
          );
        } catch (error) {
          if (!(error instanceof ExecDroppedError) || signal.aborted) throw error;
          dropped = error;
        }
        drops = started ? 1 : drops + 1;
        if (drops > RECONNECTS) throw dropped;
        this.#warn(`event stream dropped; reconnecting (${drops}/${RECONNECTS})`);
        await sleep(RECONNECT_PAUSES_MS[drops - 1], signal);
      }
    } catch (error) {
      if (signal.aborted) return;
      this.failed = true;
      this.#warn(errorLine(error));
    } finally {
      this.#listener.settled(this);
    }
  }

  /** Waits for Running (the pod); throws a per-node error if the pod cannot run. */
  async #waitRunning(signal: AbortSignal): Promise<k8s.V1Pod | undefined> {
    const { client, namespace } = this.#run;
    const deadline = performance.now() + POD_START_TIMEOUT_MS;
    let last: k8s.V1Pod | undefined;
    while (!signal.aborted) {
      try {
        last = await client.call(
          { verb: "get", resource: "pods", namespace, name: this.pod },
          (core) => core.readNamespacedPod({ name: this.pod, namespace }),
        );
      } catch (error) {
        const status = httpStatus((error as Error).cause);
        if (status === 404) throw new TcpgadgetError("the agent pod was deleted before it started");
        // A refusal stays one, and so does a server that stopped answering;
        // anything else (a blip of the server) is asked again.
        const refused = status >= 400 && status < 500;
        if (refused || error instanceof NoAnswerError || performance.now() > deadline) throw error;
      }
      if (last?.status?.phase === "Running") return last;
      const failure = last && podFailure(last, this.#run.image, this.#run.program);
      if (failure) throw new TcpgadgetError(failure);
      if (performance.now() > deadline) {
        const reason = last?.status?.conditions?.find((c) => c.status === "False")?.message;
        throw new TcpgadgetError(
          `pod did not start within ${POD_START_TIMEOUT_MS / 1000} s (${
            last?.status?.phase ?? "unknown"
          }${reason ? `: ${reason}` : ""})`,
        );
      }
      await sleep(250, signal);
    }
    return undefined;
  }

  #stream(delivery: ProgramDelivery, signal: AbortSignal, onStarted: () => void) {
    const stdout = new LineSplitter((line) => this.#listener.line(this, line));
    // Its diagnostics (why it failed, lost events) are shown as they come.
    const stderr = new LineSplitter((line) => {
      if (TRACING_LINE.test(line)) {
        onStarted();
        if (!this.ready) {
          this.ready = true;
          this.#listener.settled(this);
        }
        return;
      }
      this.#warn(line.replace(/^tcpgadget: /, ""));
    });
    const command = delivery.command(this.#run.agentArgs(this.node));
    return execInPod(this.#target, command, {
      onStdout: (chunk) => stdout.push(chunk),
      onStderr: (chunk) => stderr.push(chunk),
      signal,
    });
  }
}
