/**
 * Characters a terminal, a log viewer or a parser acts on: what no report
 * may carry from the traced system.
 *
 * @module
 */

/**
 * The first character of `text` that a terminal acts on (C0 controls but
 * the line feed, DEL, C1 controls, bidi embeddings, overrides and
 * isolates), as `U+NNNN`; undefined if there is none.
 */
export function activeCharacter(text: string): string | undefined {
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (
      (code < 0x20 && code !== 0x0a) || (code >= 0x7f && code <= 0x9f) ||
      (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069)
    ) {
      return `U+${code.toString(16).padStart(4, "0")}`;
    }
  }
  return undefined;
}
