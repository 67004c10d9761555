/**
 * Text from the traced system (command names, pod, namespace and container
 * names, endpoint and DNS names, a node's messages) made safe to print on a
 * terminal, in a report or in a JSON or XML file: any process may name
 * itself `\x1b[2J` or put a newline in its name, and printed raw that would
 * clear the operator's screen or forge whole lines.
 *
 * @module
 */

/**
 * The characters beyond the C0 controls that are escaped: DEL and the C1
 * controls; the line and paragraph separators; the bidirectional controls
 * (marks, embeddings, overrides, isolates) that make text display in
 * another order than it is (CVE-2021-42574); the invisible characters that
 * hide text (zero-width space, joiners, word joiner, invisible operators,
 * byte order mark); and U+FFFE, U+FFFF, which XML cannot hold (JUnit
 * reports). As a regular expression character class body.
 */
export const ACTIVE_CHARACTERS =
  "\\x7f-\\x9f\\u061c\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2069\\ufeff\\ufffe\\uffff";

// And the C0 controls, the backslash (so that an escape is never
// ambiguous), and a lone surrogate (not text: XML cannot hold it either).
const UNSAFE = new RegExp(`[\\\\\\x00-\\x1f${ACTIVE_CHARACTERS}]|\\p{Cs}`, "u");
const UNSAFE_ALL = new RegExp(UNSAFE.source, "gu");
const ACTIVE_ALL = new RegExp(`[${ACTIVE_CHARACTERS}]`, "g");

/**
 * `text` with every control and invisible character escaped, as Go's `%q`
 * does without the quotes: `\\` for a backslash, `\n`, `\r`, `\t`, `\xHH`
 * for the other ASCII controls (C0 and DEL), `\uHHHH` for the others of
 * {@link ACTIVE_CHARACTERS} and a lone surrogate. Anything else, any other
 * script included, is kept. Text without such characters is returned as is
 * (the same string).
 *
 * @example
 * ```ts
 * import { printable } from "./printable.ts";
 * import assert from "node:assert/strict";
 * assert.equal(printable("curl"), "curl");
 * assert.equal(printable("ééé \u{1f600}"), "ééé \u{1f600}");
 * assert.equal(printable("a\x1b[2J\nb"), "a\\x1b[2J\\nb");
 * assert.equal(printable("tab\there\\"), "tab\\there\\\\");
 * assert.equal(printable("\x7f\x85\u2028\u202e"), "\\x7f\\u0085\\u2028\\u202e");
 * assert.equal(printable("a\u200bb\ufeff\ud800\uffff"), "a\\u200bb\\ufeff\\ud800\\uffff");
 * ```
 */
export function printable(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escape) : text;
}

/**
 * JSON text in which the characters of {@link ACTIVE_CHARACTERS}, which
 * JSON.stringify leaves as they are, are `\uHHHH` escapes: the same value
 * to a JSON parser, harmless to `cat` (JSON.stringify escapes the C0
 * controls and lone surrogates itself).
 *
 * @example
 * ```ts
 * import { printableJson } from "./printable.ts";
 * import assert from "node:assert/strict";
 * const text = printableJson({ comm: "a\u009b2Jb\u202e\u200b" });
 * assert.equal(text, '{"comm":"a\\u009b2Jb\\u202e\\u200b"}');
 * assert.deepEqual(JSON.parse(text), { comm: "a\u009b2Jb\u202e\u200b" });
 * ```
 */
export function printableJson(value: unknown, indent?: number): string {
  return escapeActive(JSON.stringify(value, null, indent));
}

/** JSON text with the characters of {@link ACTIVE_CHARACTERS} as `\uHHHH` escapes. */
export function escapeActive(json: string): string {
  return json.replace(ACTIVE_ALL, unicodeEscape);
}

function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
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
  return code < 0x80 ? `\\x${code.toString(16).padStart(2, "0")}` : unicodeEscape(c);
}
