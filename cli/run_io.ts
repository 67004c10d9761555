/**
 * What a run mode talks to besides the kernel and the API: stdout for
 * events, stderr for warnings (tests substitute their own).
 *
 * @module
 */

import { printWarning } from "../core/warning.ts";

/** Where a run writes. */
export interface TraceIo {
  stdout: { writeSync(data: Uint8Array): number };
  /** One diagnostic line (no newline). */
  warn(message: string): void;
}

/** stdout, and warnings on stderr prefixed with "tcpgadget: ". */
export const DEFAULT_IO: TraceIo = {
  stdout: Deno.stdout,
  warn: printWarning,
};
