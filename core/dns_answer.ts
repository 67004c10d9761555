/**
 * A DNS answer as the kernel delivered it to a socket (see
 * bpf/dnssnoop.bpf.c), and where such answers come from: what the names of
 * destinations are learned from.
 *
 * @module
 */

import { type DnsAddressRecord, parseDnsMessage, parseDnsOverTcp } from "./dns_message.ts";

/** One DNS answer on its way to a process. */
export interface DnsAnswer {
  /** When the kernel queued it on the socket: ns since the Unix epoch, on TcpEvent's clock. */
  timeNs: bigint;
  /** Network namespace inode of the receiving socket (TcpEvent's `netns`). */
  netns: number;
  /** "udp": one DNS message; "tcp": a segment's data, each message after its 2-byte length. */
  transport: "udp" | "tcp";
  /** The payload, as copied from the packet (its first bytes if `cut`). */
  payload: Uint8Array;
  /** Whether the payload was longer than what was copied. */
  cut: boolean;
}

/** DNS answers in the order they arrived. */
export interface DnsAnswerSource {
  /**
   * Hands every answer that has arrived to `handler`, oldest first, and
   * returns a time (ns since the epoch, TcpEvent's clock) before which
   * every answer that a process could have acted on has now been handed
   * out: one that arrived before an event that was read before this call.
   */
  drain(handler: (answer: DnsAnswer) => void): bigint;
}

/**
 * The addresses an answer gives names to (none if its payload is not a
 * well-formed answer, or was cut).
 *
 * @example
 * ```ts
 * import { addressRecords } from "./dns_answer.ts";
 * import assert from "node:assert/strict";
 * const garbage = { timeNs: 0n, netns: 1, transport: "udp", payload: new Uint8Array(9), cut: false } as const;
 * assert.deepEqual(addressRecords(garbage), []);
 * ```
 */
export function addressRecords(answer: DnsAnswer): DnsAddressRecord[] {
  if (answer.cut && answer.transport === "udp") return [];
  return answer.transport === "udp"
    ? parseDnsMessage(answer.payload)
    : parseDnsOverTcp(answer.payload);
}
