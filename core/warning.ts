/**
 * The default way a warning reaches the user: one line on stderr, prefixed
 * with the program's name. Modules that warn take a callback defaulting to
 * this, so that tests and embedders can collect warnings instead.
 *
 * @module
 */

/** Prints `tcpgadget: <message>` on stderr. */
export function printWarning(message: string): void {
  console.error(`tcpgadget: ${message}`);
}
