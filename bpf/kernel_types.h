/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The few kernel types tcptracer.bpf.c reads, declared with only the fields
 * it uses. preserve_access_index makes every access a CO-RE relocation, so
 * libbpf rewrites offsets against the running kernel's BTF at load time:
 * this file never has to match any one kernel's layout, and a generated
 * vmlinux.h (3 MB, one kernel's view) is not needed.
 *
 * Fields that live in anonymous unions in the kernel are declared flat here;
 * libbpf's field matching descends into anonymous members.
 */
#ifndef TCPGADGET_KERNEL_TYPES_H
#define TCPGADGET_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* bpf_helper_defs.h names these in prototypes. */
struct bpf_map;
struct pt_regs;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

/* Only to ask, with bpf_core_enum_value_exists(), whether the running
 * kernel has a helper. */
enum bpf_func_id {
	BPF_FUNC_get_current_task_btf = 158,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

struct ns_common {
	unsigned int inum;
	__u64 ns_id; /* from Linux 6.18: an id never reused until reboot */
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

/* Held by a process between lock_sock() and release_sock(). */
typedef struct {
	int owned;
} socket_lock_t;

struct sock {
	struct sock_common __sk_common;
	socket_lock_t sk_lock;
	int sk_err;
	__u16 sk_protocol;
	__u16 sk_type;
};

struct inet_sock {
	__be16 inet_sport;
};

struct inet_connection_sock {
	struct inet_sock icsk_inet;
};

struct tcp_sock {
	struct inet_connection_sock inet_conn;
};

struct socket {
	struct sock *sk;
};

struct inode {
	unsigned short i_mode;
};

struct file {
	void *private_data;
	struct inode *f_inode;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct mnt_namespace {
	struct ns_common ns;
	__u64 seq; /* before Linux 6.18: the same, for mount namespaces */
};

struct nsproxy {
	struct mnt_namespace *mnt_ns;
};

typedef struct {
	unsigned int val;
} kuid_t;

typedef struct {
	unsigned int val;
} kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
};

struct kernfs_node {
	__u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

/* The area a vmalloc'ed (CONFIG_VMAP_STACK) task stack lives in. */
struct vm_struct {
	unsigned long size;
};

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live; /* threads of the group that have not exited */
};

struct task_struct {
	void *stack; /* lowest address of the task's kernel stack */
	struct vm_struct *stack_vm_area;
	unsigned int flags;
	int pid;
	int tgid;
	char comm[16];
	const struct cred *cred;
	struct files_struct *files;
	struct nsproxy *nsproxy;
	struct css_set *cgroups;
	struct signal_struct *signal;
	__u64 start_time; /* CLOCK_MONOTONIC ns; a thread group's leader's stays the group's */
};

struct bpf_iter_meta;

/* Context of an iter/task_file program: one call per open file. */
struct bpf_iter__task_file {
	union {
		struct bpf_iter_meta *meta;
	};
	union {
		struct task_struct *task;
	};
	__u32 fd;
	union {
		struct file *file;
	};
};

#pragma clang attribute pop

#endif /* TCPGADGET_KERNEL_TYPES_H */
