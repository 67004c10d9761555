/**
 * The exit status of `egress run|watch|record`, in one place.
 *
 * @module
 */

/** What the exit status depends on. */
export interface ExitFacts {
  /** The command line or a policy file was wrong (nothing ran). */
  usageError?: boolean;
  /** Distinct destinations judged violations. */
  violations: number;
  /** Expectations no established connection met. */
  unmetExpectations: number;
  /** Events the kernel or a node could not deliver. */
  lostEvents: number;
  /** `--allow-lost`: lost events do not fail the run. */
  allowLost: boolean;
  /**
   * COMMAND's exit status (128 + N when killed by signal N); undefined
   * for watch or record without a command.
   */
  commandStatus?: number;
}

/** Exit status of a usage error. */
export const EXIT_USAGE = 2;
/** Exit status when a connection broke the policy or an expectation was not met. */
export const EXIT_VIOLATION = 3;
/** Exit status when events were lost (the run cannot vouch for what it did not see). */
export const EXIT_LOST = 4;

/**
 * 2 for a usage error; else 3 if any violation or unmet expectation; else
 * 4 if events were lost (unless `--allow-lost`); else COMMAND's own status
 * (0 without one). A violation outranks lost events: it is certain, and
 * what was lost could only add to it.
 *
 * @example
 * ```ts
 * import { egressExitStatus } from "./exit_status.ts";
 * import assert from "node:assert/strict";
 * const clean = { violations: 0, unmetExpectations: 0, lostEvents: 0, allowLost: false };
 * assert.equal(egressExitStatus({ ...clean, commandStatus: 1 }), 1);
 * assert.equal(egressExitStatus({ ...clean, lostEvents: 5, commandStatus: 1 }), 4);
 * assert.equal(egressExitStatus({ ...clean, violations: 1, lostEvents: 5 }), 3);
 * ```
 */
export function egressExitStatus(facts: ExitFacts): number {
  if (facts.usageError) return EXIT_USAGE;
  if (facts.violations > 0 || facts.unmetExpectations > 0) return EXIT_VIOLATION;
  if (facts.lostEvents > 0 && !facts.allowLost) return EXIT_LOST;
  return facts.commandStatus ?? 0;
}

/**
 * Why the run fails, as short phrases (empty when it passes on the policy;
 * COMMAND's own failure is not the policy's).
 *
 * @example
 * ```ts
 * import { failureReasons } from "./exit_status.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(
 *   failureReasons({ violations: 2, unmetExpectations: 1, lostEvents: 3, allowLost: false }),
 *   ["2 destinations broke the policy", "1 expectation not met", "3 events lost"],
 * );
 * ```
 */
export function failureReasons(facts: ExitFacts): string[] {
  const reasons: string[] = [];
  if (facts.violations > 0) {
    reasons.push(
      `${facts.violations} destination${facts.violations === 1 ? "" : "s"} broke the policy`,
    );
  }
  if (facts.unmetExpectations > 0) {
    reasons.push(
      `${facts.unmetExpectations} expectation${facts.unmetExpectations === 1 ? "" : "s"} not met`,
    );
  }
  if (facts.lostEvents > 0 && !facts.allowLost) {
    reasons.push(`${facts.lostEvents} event${facts.lostEvents === 1 ? "" : "s"} lost`);
  }
  return reasons;
}
