// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * DNS answers as the kernel delivers them to sockets, in every network
 * namespace, for naming the destinations of TCP connections. No proxy, no
 * change to resolv.conf or the firewall: one cgroup_skb/ingress program on
 * the root of the cgroup v2 hierarchy, which the kernel runs for every
 * packet it queues on a socket of any process (every process is in that
 * hierarchy, whatever its network namespace), loopback included, after IP
 * reassembly. Why not a tracepoint: none sees datagram payloads on their
 * way to a socket (skb_copy_datagram_iovec is skipped for linear skbs,
 * which most UDP datagrams are), and kprobes are not available.
 *
 * Only DNS answers reach user space: UDP or TCP from port 53, with the
 * header's QR bit set, a standard query opcode and at least one answer
 * record. The program never drops a packet (it returns 1).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "dnssnoop.h"

#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define DNS_HEADER_BYTES 12

/* The first fields of the uapi struct __sk_buff (the program's context),
 * laid out as <linux/bpf.h> has them; only `len` is read. */
struct __sk_buff {
	__u32 len;
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct sk_buff {
	struct sock *sk;
};
#pragma clang attribute pop

/* Linux 6.2+: the kernel's sk_buff behind the context, to reach the
 * socket's network namespace (struct __sk_buff does not carry it). */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* user space may resize it */
} answers SEC(".maps");

/* A struct dns_event and the payload after it, built here (too large for
 * the stack) and copied to the ring with bpf_ringbuf_output(). */
struct scratch {
	struct dns_event event;
	__u8 payload[DNS_MAX_COPY];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNS_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Keep the contract's types in the object's BTF (checked by a test). */
const struct dns_event *unused_dns_event __attribute__((unused));
const enum dns_limits *unused_dns_limits __attribute__((unused));
const enum dns_counter *unused_dns_counter __attribute__((unused));

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	if (value)
		*value += 1;
}

/* Whether the 12 bytes at `offset` are the header of a DNS answer worth
 * reading: a response (QR) to a standard query with answer records. */
static __always_inline bool is_answer(struct __sk_buff *skb, __u32 offset)
{
	__u8 header[DNS_HEADER_BYTES];

	if (bpf_skb_load_bytes(skb, offset, header, sizeof(header)))
		return false;
	/* flags: QR(1) OPCODE(4) AA TC RD | RA Z AD CD RCODE(4) */
	if ((header[2] & 0xf8) != 0x80)
		return false;
	return header[6] || header[7]; /* ANCOUNT */
}

/*
 * A length from 1 to DNS_MAX_COPY (a power of two) that the verifier can
 * bound: unchanged for such a length. Clang knows the caller's bounds and
 * would drop the mask, which the verifier needs: the empty asm hides them.
 */
static __always_inline __u32 verifiable_length(__u32 length)
{
	asm volatile("" : "+r"(length));
	return ((length - 1) & (DNS_MAX_COPY - 1)) + 1;
}

SEC("cgroup_skb/ingress")
int dns_answers(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 len = skb->len, l4, payload, dns, length, zero = 0;
	__u8 version, protocol, ip[20];
	__u16 ports[2];
	struct scratch *s;
	struct sock *sk;

	if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
		return 1;
	version = ip[0] >> 4;
	if (version == 4) {
		protocol = ip[9];
		l4 = (ip[0] & 0xf) * 4;
	} else if (version == 6) {
		/* Extension headers are not followed: DNS answers carry none. */
		protocol = ip[6];
		l4 = 40;
	} else {
		return 1;
	}
	if (protocol != IPPROTO_UDP && protocol != IPPROTO_TCP)
		return 1;
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) || ports[0] != bpf_htons(DNS_PORT))
		return 1;
	if (protocol == IPPROTO_UDP) {
		payload = l4 + 8;
		dns = payload;
	} else {
		__u8 data_offset;

		if (bpf_skb_load_bytes(skb, l4 + 12, &data_offset, 1))
			return 1;
		payload = l4 + (data_offset >> 4) * 4;
		dns = payload + 2; /* after the message's length */
	}
	if (len < dns + DNS_HEADER_BYTES || !is_answer(skb, dns))
		return 1;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 1;
	length = len - payload;
	s->event.timestamp_ns = bpf_ktime_get_boot_ns();
	sk = kskb->sk;
	s->event.netns_id = sk ? sk->__sk_common.skc_net.net->ns.inum : 0;
	s->event.payload_length = length;
	if (length > DNS_MAX_COPY) {
		length = DNS_MAX_COPY;
		count(DNS_COUNTER_CUT);
	}
	length = verifiable_length(length);
	s->event.copied = length;
	s->event.protocol = protocol;
	s->event.ip_version = version;
	if (bpf_skb_load_bytes(skb, payload, s->payload, length))
		return 1;
	if (bpf_ringbuf_output(&answers, s, sizeof(s->event) + length, 0))
		count(DNS_COUNTER_LOST);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
