/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Shared between the kernel program (tcptracer.bpf.c) and user space, whose
 * copy of this contract is core/tcptracer_abi.ts: plain C types with
 * explicit padding, so the layout is the same for clang's BPF target and
 * for the TypeScript side. A test checks every offset and enum value there
 * against the BTF of the compiled object.
 */
#ifndef TCPGADGET_TCPTRACER_H
#define TCPGADGET_TCPTRACER_H

#define TASK_COMM_LEN 16

/*
 * What happened to the connection (the T column). Enums, not macros, so
 * that they are in the object's BTF, where a test compares them with
 * core/tcptracer_abi.ts.
 */
enum event_type {
	EVENT_CONNECT = 1, /* C: connect() reached ESTABLISHED, or failed */
	EVENT_ACCEPT = 2, /* A: accept()/accept4() returned it */
	EVENT_CLOSE = 3, /* X: an established connection was closed */
	EVENT_UNKNOWN = 4, /* U: established or closed, process unknown */
};

/* Bits of tcptracer_config.kinds: which events the kernel emits. */
enum event_kind {
	KIND_CONNECT = 0x1, /* successful connects */
	KIND_CONNECT_FAILED = 0x2, /* failed connects (event.error != 0) */
	KIND_ACCEPT = 0x4,
	KIND_CLOSE = 0x8,
	KIND_UNKNOWN = 0x10,
	KIND_ALL = 0x1f,
};

/*
 * The container filter's decision about the processes of one mount
 * namespace: the values of the mntns_decisions map, keyed by the
 * namespace's seq (see event.mntns_seq). No entry: undecided, so events
 * go to user space, which decides from the first one.
 */
enum mntns_decision {
	MNTNS_ALLOW = 1,
	MNTNS_DENY = 2,
};

struct event {
	__u64 timestamp_ns; /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id; /* cgroup v2 id of the attributed process */
	__u32 mntns_id; /* mount namespace inode of the attributed process */
	__u32 netns_id; /* network namespace inode of the socket */
	__u32 pid; /* tgid of the attributed process; 0 for U */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u8 saddr[16]; /* local address: 4 or 16 bytes used, network order */
	__u8 daddr[16]; /* remote address */
	__u16 sport; /* local port, host order */
	__u16 dport; /* remote port, host order */
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 error; /* errno of a failed connect, else 0 */
	__u8 type; /* enum event_type */
	__u8 pad[3];
	char comm[TASK_COMM_LEN];
	__u8 pad2[4];
	/* Id of the mount namespace that is never reused until reboot (its
	 * inode number, mntns_id, is); only with filter_mntns_enabled, else 0. */
	__u64 mntns_seq;
};

/*
 * Set by user space before load (a const volatile global, so the verifier
 * sees the values as constants and prunes disabled paths).
 */
struct tcptracer_config {
	__u32 filter_pid; /* 0: any */
	__u32 kinds; /* mask of enum event_kind */
	__u64 wakeup_bytes; /* wake the reader once this much is queued; 0: every event */
	__u8 filter_comm_enabled;
	__u8 filter_mntns_enabled; /* drop mount namespaces mntns_decisions denies */
	__u8 filter_tree_enabled; /* only processes in traced_tgids */
	__u8 pad[5];
	char filter_comm[TASK_COMM_LEN];
};

/*
 * A process of the traced tree (config.filter_tree_enabled): the value of
 * traced_tgids, whose key is its thread group id.
 */
struct tree_member {
	__u64 start_time; /* task->start_time of its leader; 0: any (added by user space) */
	__u8 exited; /* every thread has exited: a zombie until it is reaped */
	__u8 pad[7];
};

#endif /* TCPGADGET_TCPTRACER_H */
