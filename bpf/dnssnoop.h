/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Shared between dnssnoop.bpf.c and user space, whose copy of this contract
 * is core/dnssnoop_abi.ts: plain C types with explicit padding. A test
 * checks every offset and enum value there against the BTF of the compiled
 * object.
 */
#ifndef TCPGADGET_DNSSNOOP_H
#define TCPGADGET_DNSSNOOP_H

/* Limits of what is copied to user space. */
enum dns_limits {
	DNS_PORT = 53,
	/* Bytes of a DNS payload copied: all of any UDP answer up to the usual
	 * EDNS buffer sizes (1232, 4096); a longer payload is cut and flagged. */
	DNS_MAX_COPY = 8192,
};

/* A DNS answer delivered to a socket, followed in the ring by `copied`
 * bytes of its payload: the DNS message (UDP), or the TCP segment's data,
 * which starts with the message's 2-byte length. */
struct dns_event {
	__u64 timestamp_ns; /* bpf_ktime_get_boot_ns(), as struct event's */
	__u32 netns_id; /* network namespace inode of the receiving socket */
	__u32 payload_length; /* bytes of the payload in the packet */
	__u16 copied; /* bytes of it that follow: min(payload_length, DNS_MAX_COPY) */
	__u8 protocol; /* IPPROTO_UDP (17) or IPPROTO_TCP (6) */
	__u8 ip_version; /* 4 or 6 */
	__u8 pad[4];
};

/* Counters, per CPU (one array entry each). */
enum dns_counter {
	DNS_COUNTER_LOST = 0, /* answers dropped: the ring was full */
	DNS_COUNTER_CUT = 1, /* answers longer than DNS_MAX_COPY, cut */
	DNS_COUNTERS = 2,
};

#endif /* TCPGADGET_DNSSNOOP_H */
