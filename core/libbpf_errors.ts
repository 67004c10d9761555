/**
 * libbpf's C return conventions turned into {@link LibbpfError}s: libbpf
 * 1.x returns `-errno` from functions that return an int, and NULL with
 * errno set from functions that return a pointer.
 *
 * @module
 */

import { LibbpfError } from "./errors.ts";
import { errno, strerror } from "./libc.ts";
import { errnoName } from "./errno.ts";
import { libbpfReason } from "./libbpf_log.ts";

function describeErrno(err: number): string {
  return `${strerror(err)} (${errnoName(err)})`;
}

/** A LibbpfError for a failed call, with libbpf's own reason if it gave one. */
export function libbpfError(what: string, err: number): LibbpfError {
  const reason = libbpfReason();
  return new LibbpfError(
    `${what}: ${describeErrno(err)}${reason ? `: ${reason}` : ""}`,
    err,
  );
}

/** Throws a {@link LibbpfError} if a libbpf int result is negative. */
export function check(result: number, what: string): number {
  if (result < 0) throw libbpfError(what, -result);
  return result;
}

/** Throws a {@link LibbpfError} (with errno) if a libbpf pointer result is NULL. */
export function checkPointer(
  pointer: Deno.PointerValue,
  what: string,
): Deno.PointerObject {
  if (pointer === null) throw libbpfError(what, errno() || 22 /* EINVAL */);
  return pointer;
}
