/**
 * The short-lived pod tcpgadget runs on each node it traces: pinned to the
 * node, privileged, in the host's PID namespace, tolerating every taint,
 * with a deadline so that it ends even if tcpgadget's client vanishes, and
 * no service account token (it needs no API access: the client enriches).
 *
 * @module
 */

import type * as k8s from "@kubernetes/client-node";

/** Label on everything tcpgadget creates (what `tcpgadget cleanup` deletes). */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "tcpgadget";
/** Label naming the run a pod belongs to. */
export const RUN_LABEL = "tcpgadget.io/run";
/** Annotation naming the traced node (node names may be too long for a label). */
export const NODE_ANNOTATION = "tcpgadget.io/node";

/**
 * The default agent image: it must provide glibc (2.33 or later) and
 * libgcc_s (what the Deno runtime links), a POSIX shell, and what
 * copy_scripts.ts runs (coreutils, gzip, perl), `env` and `sleep`.
 * Debian's slim image has all of them and is in most registries' mirrors.
 * (An image that holds tcpgadget needs none of them: --agent-image.)
 */
export const DEFAULT_AGENT_IMAGE = "debian:bookworm-slim";

/** Where the host's / is mounted in the pod (the agent's --host-root). */
export const HOST_ROOT = "/host";

/** Where the agent's program is uploaded in the pod (an emptyDir). */
export const AGENT_DIR = "/tmp/tcpgadget";

/**
 * The agent's pid file: an agent started after its stream dropped stops the
 * one before (the exec API does not promise to end a command whose stream
 * is gone), node mode's `--agent-pid-file`.
 */
export const AGENT_PID_FILE = `${AGENT_DIR}/agent.pid`;

/** What one agent pod is. */
export interface AgentPodOptions {
  runId: string;
  /** Position of the node in the run, for a short unique name. */
  index: number;
  node: string;
  namespace: string;
  image: string;
  /**
   * Where the image holds tcpgadget (--agent-image); without it, tcpgadget
   * is uploaded and the image only provides what it runs on.
   */
  program?: string;
  /** activeDeadlineSeconds: the most the pod can live. */
  deadlineSeconds: number;
  /** Secrets of the pod's namespace that its image is pulled with. */
  imagePullSecrets?: string[];
}

/** The name of a run's pod for one node. */
export function agentPodName(runId: string, index: number): string {
  return `tcpgadget-${runId}-${index}`;
}

/**
 * The pod manifest.
 *
 * @example
 * ```ts
 * import { agentPod } from "./agent_pod.ts";
 * import assert from "node:assert/strict";
 * const pod = agentPod({
 *   runId: "a1b2c3", index: 0, node: "worker-1", namespace: "default",
 *   image: "debian:bookworm-slim", deadlineSeconds: 3600,
 * });
 * assert.equal(pod.spec?.nodeName, "worker-1");
 * assert.equal(pod.spec?.containers[0].securityContext?.privileged, true);
 * ```
 */
export function agentPod(options: AgentPodOptions): k8s.V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: agentPodName(options.runId, options.index),
      namespace: options.namespace,
      labels: {
        [MANAGED_BY_LABEL]: MANAGED_BY,
        [RUN_LABEL]: options.runId,
        "app.kubernetes.io/name": "tcpgadget-agent",
      },
      annotations: { [NODE_ANNOTATION]: options.node },
    },
    spec: {
      // Pinned: no scheduler decision, so taints and cordons do not matter.
      nodeName: options.node,
      hostPID: true,
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      activeDeadlineSeconds: options.deadlineSeconds,
      terminationGracePeriodSeconds: 1,
      tolerations: [{ operator: "Exists" }],
      ...(options.imagePullSecrets?.length
        ? { imagePullSecrets: options.imagePullSecrets.map((name) => ({ name })) }
        : {}),
      containers: [{
        name: "agent",
        image: options.image,
        // Idles until tcpgadget execs the tracer, or until the deadline; an
        // image of tcpgadget alone has no sleep (`tcpgadget agent idle`).
        command: options.program
          ? [options.program, "agent", "idle", String(options.deadlineSeconds)]
          : ["sleep", String(options.deadlineSeconds)],
        securityContext: { privileged: true },
        volumeMounts: [
          { name: "host", mountPath: HOST_ROOT, readOnly: true },
          // The upload does not depend on a writable image.
          { name: "work", mountPath: AGENT_DIR },
        ],
      }],
      volumes: [{ name: "host", hostPath: { path: "/" } }, { name: "work", emptyDir: {} }],
    },
  };
}
