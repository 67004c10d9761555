/**
 * Strings from the traced system (command names, pod names, DNS names) made
 * safe to show: nothing in them can move a terminal's cursor, start a line,
 * or reorder the text around them.
 *
 * @module
 */

// C0 controls, DEL and C1 controls (U+009B is a CSI on UTF-8 terminals);
// Unicode's invisible and direction-changing characters (bidi embeddings,
// overrides and isolates, zero-width characters, line and paragraph
// separators, the byte order mark); what XML cannot hold (U+FFFE, U+FFFF,
// a lone surrogate); the backslash, so that an escape in the output always
// means an escaped character.
const UNSAFE =
  // deno-lint-ignore no-control-regex -- matching control characters is the point
  /[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufffe\uffff\\]|\p{Cs}/gu;

/**
 * `text` with every control character written as `\xNN`, every invisible
 * or direction-changing Unicode character as `\u{NNNN}`, and `\` as `\\`.
 *
 * @example
 * ```ts
 * import { escapeUntrusted } from "./untrusted_text.ts";
 * import assert from "node:assert/strict";
 * assert.equal(escapeUntrusted("curl\x1b[2J\nx"), "curl\\x1b[2J\\x0ax");
 * assert.equal(escapeUntrusted("a\\x41\u202eb"), "a\\\\x41\\u{202e}b");
 * assert.equal(escapeUntrusted("registry.npmjs.org"), "registry.npmjs.org");
 * assert.equal(escapeUntrusted("\ud800\ufffe\u{1f600}"), "\\u{d800}\\u{fffe}\u{1f600}");
 * ```
 */
export function escapeUntrusted(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

function escapeChar(c: string): string {
  if (c === "\\") return "\\\\";
  const code = c.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u{${code.toString(16).padStart(4, "0")}}`;
}

/**
 * JSON text in which the characters a terminal acts on but JSON.stringify
 * leaves as they are (DEL, C1 controls, bidi and invisible characters) are
 * `\uNNNN` escapes: the same value to a JSON parser, harmless to `cat`.
 *
 * @example
 * ```ts
 * import { safeJson } from "./untrusted_text.ts";
 * import assert from "node:assert/strict";
 * const text = safeJson({ comm: "a\u009b2Jb\u202e" });
 * assert.equal(text, '{"comm":"a\\u009b2Jb\\u202e"}');
 * assert.deepEqual(JSON.parse(text), { comm: "a\u009b2Jb\u202e" });
 * ```
 */
export function safeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    /[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
