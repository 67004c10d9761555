/**
 * Errors tcpgadget reports to its user. Each has a one-line message that is
 * printed as is (no stack trace) and an exit status; anything else that is
 * thrown is a bug and is reported as one.
 *
 * @module
 */

/** An error whose message is meant for the user: one line, actionable. */
export class TcpgadgetError extends Error {
  /** Process exit status when this error ends the program. */
  readonly exitCode: number;

  constructor(message: string, options?: ErrorOptions & { exitCode?: number }) {
    super(message, options);
    this.name = "TcpgadgetError";
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** Bad command line: unknown flag, bad value, unknown column. Exit status 2. */
export class UsageError extends TcpgadgetError {
  constructor(message: string) {
    super(message, { exitCode: 2 });
    this.name = "UsageError";
  }
}

/** The program lacks the privileges it needs (root, CAP_BPF, ...). */
export class PermissionError extends TcpgadgetError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PermissionError";
  }
}

/**
 * The kernel or host lacks something tcpgadget needs (BTF, a tracepoint, a
 * BPF feature). Callers may catch it to fall back to another mechanism.
 */
export class UnsupportedError extends TcpgadgetError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnsupportedError";
  }
}

/** A libbpf call failed; `errno` is the positive error number. */
export class LibbpfError extends TcpgadgetError {
  readonly errno: number;

  constructor(message: string, errno: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "LibbpfError";
    this.errno = errno;
  }
}

/**
 * The first line of what was thrown: what a one-line report shows of it.
 *
 * @example
 * ```ts
 * import { errorLine } from "./errors.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(errorLine(new Error("no route\n  at x.ts:1")), "no route");
 * assert.deepEqual(errorLine("plain"), "plain");
 * ```
 */
export function errorLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0].trim();
}
