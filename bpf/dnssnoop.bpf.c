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
 * which most UDP datagrams are), and kprobes are not available. Attached
 * with a link: it runs beside other programs on the cgroup (systemd's),
 * and goes when tcpgadget does.
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
 * laid out as <linux/bpf.h> has them: a stable ABI. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
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

/* What the IP and transport headers say. */
struct headers {
	__u8 version; /* 4 or 6 */
	__u8 protocol; /* IPPROTO_UDP or IPPROTO_TCP */
	__u16 sport; /* network order */
	__u32 l4; /* where the transport header starts */
};

/* The IP version, protocol and transport offset of an IP header's first
 * bytes; false if not UDP or TCP. IPv6 extension headers are not followed:
 * DNS answers carry none. */
static __always_inline bool parse_ip(const __u8 *ip, struct headers *h)
{
	h->version = ip[0] >> 4;
	if (h->version == 4) {
		h->protocol = ip[9];
		h->l4 = (ip[0] & 0xf) * 4;
	} else if (h->version == 6) {
		h->protocol = ip[6];
		h->l4 = 40;
	} else {
		return false;
	}
	return h->protocol == IPPROTO_UDP || h->protocol == IPPROTO_TCP;
}

/*
 * Reads the headers. Every packet of every socket comes here, so they are
 * read in place where they lie in the packet's linear part (nearly always):
 * a helper call costs more than the rest of the check (66 ns a packet
 * instead of 125, measured on loopback churn). bpf_skb_load_bytes() for the
 * rest.
 */
static __always_inline bool read_headers(struct __sk_buff *skb, struct headers *h)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	__u8 ip[40];
	__u16 *port;

	if (data + 40 <= data_end) {
		if (!parse_ip(data, h))
			return false;
		port = data + h->l4;
		if ((void *)(port + 1) <= data_end) {
			h->sport = *port;
			return true;
		}
	}
	if (bpf_skb_load_bytes(skb, 0, ip, 20) || (ip[0] >> 4 == 6 && bpf_skb_load_bytes(skb, 0, ip, 40)))
		return false;
	if (!parse_ip(ip, h))
		return false;
	return !bpf_skb_load_bytes(skb, h->l4, &h->sport, sizeof(h->sport));
}

SEC("cgroup_skb/ingress")
int dns_answers(struct __sk_buff *skb)
{
	__u32 len = skb->len, payload, dns, length, zero = 0;
	struct headers h;
	struct sk_buff *kskb;
	struct scratch *s;
	struct sock *sk;

	if (!read_headers(skb, &h) || h.sport != bpf_htons(DNS_PORT))
		return 1;
	if (h.protocol == IPPROTO_UDP) {
		payload = h.l4 + 8;
		dns = payload;
	} else {
		__u8 data_offset;

		if (bpf_skb_load_bytes(skb, h.l4 + 12, &data_offset, 1))
			return 1;
		payload = h.l4 + (data_offset >> 4) * 4;
		dns = payload + 2; /* after the message's length */
	}
	if (len < dns + DNS_HEADER_BYTES || !is_answer(skb, dns))
		return 1;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 1;
	length = len - payload;
	s->event.timestamp_ns = bpf_ktime_get_boot_ns();
	kskb = bpf_cast_to_kern_ctx(skb);
	sk = kskb->sk;
	s->event.netns_id = sk ? sk->__sk_common.skc_net.net->ns.inum : 0;
	s->event.payload_length = length;
	if (length > DNS_MAX_COPY) {
		length = DNS_MAX_COPY;
		count(DNS_COUNTER_CUT);
	}
	length = verifiable_length(length);
	s->event.copied = length;
	s->event.protocol = h.protocol;
	s->event.ip_version = h.version;
	if (bpf_skb_load_bytes(skb, payload, s->payload, length))
		return 1;
	if (bpf_ringbuf_output(&answers, s, sizeof(s->event) + length, 0))
		count(DNS_COUNTER_LOST);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
