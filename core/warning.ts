/**
 * The default way a warning reaches the user: one line on stderr, prefixed
 * with the program's name. Modules that warn take a callback defaulting to
 * this, so that tests and embedders can collect warnings instead.
 *
 * @module
 */

import { printable } from "./printable.ts";

/**
 * Prints `tcpgadget: <message>` on stderr, as one line: messages may quote
 * what the traced system sent (a node's stderr, an unreadable event, a pod
 * name), so control characters are escaped ({@link printable}).
 */
export function printWarning(message: string): void {
  console.error(`tcpgadget: ${printable(message)}`);
}
