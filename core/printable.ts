/**
 * Text from the traced system (command names, pod, namespace and container
 * names, endpoint names, a node's messages) made safe to print on a
 * terminal: any process may name itself `\x1b[2J` or put a newline in its
 * name, and printed raw that would clear the operator's screen or forge
 * whole lines.
 *
 * @module
 */

// Characters that move the cursor, start a line or reorder what follows:
// C0 controls, DEL, C1 controls, the line and paragraph separators, and the
// bidirectional controls (marks, embeddings, overrides, isolates) that make
// text display in another order than it is (CVE-2021-42574); and the
// backslash, so that an escape is never ambiguous.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, "g");

/**
 * `text` with every control character escaped, as Go's `%q` does without
 * the quotes: `\\` for a backslash, `\n`, `\r`, `\t`, `\xHH` for the other
 * ASCII controls (C0 and DEL), `\uHHHH` for the C1 controls (U+0080 to
 * U+009F), U+2028, U+2029 and the bidirectional controls. Anything else,
 * any other script included, is kept. Text without such characters is
 * returned as is (the same string).
 *
 * @example
 * ```ts
 * import { printable } from "./printable.ts";
 * import assert from "node:assert/strict";
 * assert.equal(printable("curl"), "curl");
 * assert.equal(printable("ééé"), "ééé");
 * assert.equal(printable("a\x1b[2J\nb"), "a\\x1b[2J\\nb");
 * assert.equal(printable("tab\there\\"), "tab\\there\\\\");
 * assert.equal(printable("\x7f\x85\u2028\u202e"), "\\x7f\\u0085\\u2028\\u202e");
 * ```
 */
export function printable(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escape) : text;
}

function escape(c: string): string {
  switch (c) {
    case "\\":
      return "\\\\";
    case "\n":
      return "\\n";
    case "\r":
      return "\\r";
    case "\t":
      return "\\t";
  }
  const code = c.charCodeAt(0);
  return code < 0x80
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}
