/**
 * The contract between bpf/dnssnoop.bpf.c and user space, as
 * bpf/dnssnoop.h declares it: the layout of `struct dns_event` (each record
 * of the answers ring, followed by the copied payload), the copy limit and
 * the counters. Every value is checked against the BTF of the compiled
 * object by tests/bpf_object_test.ts.
 *
 * @module
 */

/** Offsets in `struct dns_event`, and its size (where the payload starts). */
export const DNS_EVENT_LAYOUT = {
  size: 24,
  timestamp_ns: 0,
  netns_id: 8,
  payload_length: 12,
  copied: 16,
  protocol: 18,
  ip_version: 19,
} as const;

/** `enum dns_limits`. */
export const DNS_LIMITS = {
  /** The port answers come from. */
  DNS_PORT: 53,
  /** Bytes of a payload copied to user space at most. */
  DNS_MAX_COPY: 8192,
} as const;

/** `enum dns_counter`: entries of the per-CPU `counters` map. */
export const DNS_COUNTER = {
  /** Answers dropped because the ring was full. */
  DNS_COUNTER_LOST: 0,
  /** Answers longer than `DNS_MAX_COPY`, cut. */
  DNS_COUNTER_CUT: 1,
  DNS_COUNTERS: 2,
} as const;

/** `dns_event.protocol` values. */
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
