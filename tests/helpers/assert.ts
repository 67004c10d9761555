/**
 * Assertions for the tests, on Node's `assert` (JSR's @std/assert is not
 * reachable from these machines).
 *
 * @module
 */

import assertNode from "node:assert/strict";

/** Deep strict equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assertNode.deepStrictEqual(actual, expected, message);
}

/** Truthiness. */
export function assert(value: unknown, message?: string): asserts value {
  assertNode.ok(value, message);
}

/** A string matches a pattern. */
export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  assertNode.match(actual, pattern, message);
}

/** `fn` throws an instance of `type` whose message matches `pattern`. */
export function assertThrows(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  type: abstract new (...args: any[]) => Error,
  pattern?: RegExp | string,
): Error {
  try {
    fn();
  } catch (error) {
    assertNode.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    if (typeof pattern === "string") assertNode.equal((error as Error).message, pattern);
    else if (pattern) assertNode.match((error as Error).message, pattern);
    return error as Error;
  }
  throw new assertNode.AssertionError({ message: `expected ${type.name} to be thrown` });
}
