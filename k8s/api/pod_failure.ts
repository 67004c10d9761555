/**
 * Why an agent pod cannot run, read from its status: an image that cannot
 * be pulled, a container that cannot be created or ended, a pod that
 * failed. One line each, for the warning that names the node.
 *
 * @module
 */

import type * as k8s from "@kubernetes/client-node";

/**
 * The reason a pod cannot run, or undefined while it may still start.
 *
 * @example
 * ```ts
 * import { podFailure } from "./pod_failure.ts";
 * import assert from "node:assert/strict";
 * const pod = {
 *   status: {
 *     phase: "Pending",
 *     containerStatuses: [{
 *       name: "agent", image: "nope:1", imageID: "", ready: false, restartCount: 0,
 *       state: { waiting: { reason: "ErrImagePull", message: "not found" } },
 *     }],
 *   },
 * };
 * assert.deepEqual(
 *   podFailure(pod, "nope:1"),
 *   'cannot pull image "nope:1": not found (--image names another image)',
 * );
 * assert.deepEqual(
 *   podFailure(pod, "nope:1", "/usr/local/bin/tcpgadget"),
 *   'cannot pull image "nope:1": not found (--agent-image names another image)',
 * );
 * pod.status.containerStatuses[0].state.waiting.message = "... 401 Unauthorized";
 * assert.deepEqual(
 *   podFailure(pod, "nope:1"),
 *   'cannot pull image "nope:1": ... 401 Unauthorized ' +
 *     "(--image names another image, or its registry needs --image-pull-secret)",
 * );
 * ```
 */
export function podFailure(
  pod: k8s.V1Pod,
  image: string,
  /** Where the image holds tcpgadget, if it does (--agent-image). */
  program?: string,
): string | undefined {
  const flag = program ? "--agent-image" : "--image";
  for (const status of pod.status?.containerStatuses ?? []) {
    const waiting = status.state?.waiting;
    const reason = waiting?.reason ?? "";
    if (/^(ErrImagePull|ImagePullBackOff|InvalidImageName|ErrImageNeverPull)$/.test(reason)) {
      // The back-off repeats the pull's error after its own words.
      const why = (waiting?.message ?? reason)
        .replace(/^Back-off pulling image "[^"]*": (ErrImagePull: )?/, "");
      // A registry that refuses who asks: the pods need a pull secret.
      const refused = /\b(401|403)\b|unauthori[sz]ed|authorization failed|no basic auth/i.test(why);
      const hint = refused
        ? `${flag} names another image, or its registry needs --image-pull-secret`
        : `${flag} names another image`;
      return `cannot pull image "${image}": ${why} (${hint})`;
    }
    if (/^(CreateContainerError|CreateContainerConfigError|RunContainerError)$/.test(reason)) {
      return `cannot start the agent container (${reason}: ${waiting?.message ?? ""})${
        hint(program)
      }`;
    }
    const terminated = status.state?.terminated;
    if (terminated) {
      return `the agent container ended (${terminated.reason ?? `exit ${terminated.exitCode}`}${
        terminated.message ? `: ${terminated.message.split("\n")[0]}` : ""
      })${terminated.reason === "StartError" ? hint(program) : ""}`;
    }
  }
  if (pod.status?.phase === "Failed" || pod.status?.phase === "Succeeded") {
    return `pod ${pod.status.phase.toLowerCase()}${
      pod.status.reason ? ` (${pod.status.reason}: ${pod.status.message ?? ""})` : ""
    }`;
  }
  return undefined;
}

/** An --agent-image that is not tcpgadget's fails to start: what it must hold. */
function hint(program: string | undefined): string {
  return program
    ? `; an --agent-image must hold tcpgadget at ${program} ('tcpgadget image build' makes one)`
    : "";
}
