/**
 * The name a process knew a connection's destination by (from a DNS answer
 * it received, or its hosts file), and what gives it for a connect event.
 *
 * @module
 */

import type { TraceEvent } from "./trace_event.ts";

/** The name of a destination, and where it came from. */
export interface DestinationName {
  name: string; // lower case, no trailing dot: the name asked for
  source: "dns" | "hosts"; // where it came from
  chain?: string[]; // CNAMEs from name to the address's owner, name first
}

/** Gives the name the process of a connect event knew its destination by. */
export interface NameDirectory {
  nameOf(event: TraceEvent): DestinationName | undefined;
}
