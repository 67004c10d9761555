// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * tcpgadget's kernel side: one event per TCP connect (C), accept (A) and
 * close (X), built only on tracepoints (a stable ABI, and all that kernels
 * without kprobes offer):
 *
 *   sock:inet_sock_set_state  every TCP state change (tp_btf, or raw_tp)
 *   syscalls:sys_exit_accept4 / sys_exit_accept   who accepted a socket
 *
 * State changes of interest and the context they run in:
 *   CLOSE -> SYN_SENT             connect(), process context: record owner
 *   SYN_SENT -> ESTABLISHED       softirq: emit C with the recorded owner
 *   SYN_SENT -> CLOSE             softirq or close(): emit C with sk_err
 *   ESTABLISHED|CLOSE_WAIT -> *   the connection stops being open: emit X,
 *                                 attributed to the current task if it holds
 *                                 the socket lock (close(), shutdown(), a
 *                                 reset it processes), else (softirq, timer)
 *                                 to the recorded owner.
 *
 * Why the socket lock tells process context apart: softirq and timers never
 * change the state of a socket a process has locked (lock_sock()); they
 * leave the packet in the backlog, which the lock holder itself processes
 * in release_sock(). So a state change with sk_lock.owned set runs in the
 * context of the process that holds the lock, and one without it does not
 * belong to the interrupted task, whatever bpf_get_current_*() says.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tcptracer.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define PF_KTHREAD 0x00200000
#define ECONNABORTED 103

/* include/net/tcp_states.h */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT1 = 4,
	TCP_CLOSE = 7,
	TCP_CLOSE_WAIT = 8,
	TCP_LAST_ACK = 9,
};

const volatile struct tcptracer_config config = {
	.kinds = KIND_ALL,
};

/* The process a connection is attributed to. */
struct owner {
	__u64 cgroup_id;
	__u64 mntns_seq; /* 0 unless config.filter_mntns_enabled */
	__u32 mntns_id;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	char comm[TASK_COMM_LEN];
};

/* sk -> the process that connected or accepted it. LRU: an entry that is
 * never cleaned up (a socket we did not see close) cannot fill the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

/*
 * The container filter (config.filter_mntns_enabled): mount namespace seq
 * -> enum mntns_decision. A namespace without a decision is let through:
 * user space names its container from the first event (which carries the
 * seq), decides, and writes the decision here; so a container that starts
 * and connects at once is seen from its first connection, and other
 * containers cost one event each. Keyed by seq, not by inode number: the
 * kernel gives a new namespace the lowest free inode number, often that of
 * one that just died, whose decision would be stale. LRU: namespaces come
 * and go and nobody deletes their decisions; a decision the LRU drops is
 * made again from the namespace's next event.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u8);
} mntns_decisions SEC(".maps");

/* The traced process tree, by thread group id, when
 * config.filter_tree_enabled is set: see "The process tree" below. Sized
 * by user space (1 entry when the filter is off). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tree_member);
} traced_tgids SEC(".maps");

/*
 * One ring buffer per CPU, made by user space (which sets max_entries to
 * the number of possible CPUs and each ring's size): CPUs that emit at
 * the same time into one shared ring contend for its lock and positions,
 * measured at 40% of the cost of an event. User space merges the rings in
 * timestamp order.
 */
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* the template; rings may be larger */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct ring);
} events SEC(".maps");

/* Events dropped because this CPU's ring buffer was full, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Keep struct event and the enums in the object's BTF, where a test checks
 * them against core/tcptracer_abi.ts. */
const struct event *unused_event __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum mntns_decision *unused_mntns_decision __attribute__((unused));

static __always_inline bool is_open(int state)
{
	return state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT;
}

/*
 * Kernel memory is read directly where the verifier knows its type from BTF
 * (tp_btf arguments, bpf_get_current_task_btf()): a plain load, several
 * times cheaper than bpf_probe_read_kernel(), which the other programs
 * (raw_tp fallback, syscall tracepoints) must use. `btf` is a constant in
 * every caller, so each program keeps only one of the two paths.
 */
#define KREAD(btf, ptr, field) ((btf) ? (ptr)->field : BPF_CORE_READ(ptr, field))

/* bpf_get_current_task_btf() exists from Linux 5.11; libbpf removes the
 * branch that the running kernel cannot verify. */
#define HAVE_TASK_BTF bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)

/*
 * The id of a mount namespace that is never reused until reboot: `seq`, a
 * count of the mount namespaces made since boot, which Linux 6.18 replaced
 * with the `ns_id` every namespace has. Read only for the container filter
 * (callers check config.filter_mntns_enabled, a constant the verifier
 * prunes on), so tracing without one reads nothing more.
 */
static __always_inline __u64 mntns_seq_of(struct mnt_namespace *ns, const bool btf)
{
	if (bpf_core_field_exists(ns->seq))
		return KREAD(btf, ns, seq);
	return KREAD(btf, ns, ns.ns_id);
}

/* The current task's mount namespace into o: 0s once an exiting task has
 * dropped its namespaces. */
static __always_inline void current_mntns(struct owner *o)
{
	struct mnt_namespace *ns;

	if (HAVE_TASK_BTF) {
		ns = bpf_get_current_task_btf()->nsproxy->mnt_ns;
		o->mntns_id = ns->ns.inum;
		o->mntns_seq = config.filter_mntns_enabled ? mntns_seq_of(ns, true) : 0;
		return;
	}
	ns = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), nsproxy, mnt_ns);
	o->mntns_id = BPF_CORE_READ(ns, ns.inum);
	o->mntns_seq = config.filter_mntns_enabled ? mntns_seq_of(ns, false) : 0;
}

static __always_inline bool current_is_kthread(void)
{
	if (HAVE_TASK_BTF)
		return bpf_get_current_task_btf()->flags & PF_KTHREAD;
	return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), flags) & PF_KTHREAD;
}

static __always_inline void owner_from_current(struct owner *o)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	o->cgroup_id = bpf_get_current_cgroup_id();
	current_mntns(o);
	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->uid = (__u32)uid_gid;
	o->gid = uid_gid >> 32;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

/* Applied to the attributed process (NULL for U events, which have none). */
static __always_inline bool owner_allowed(const struct owner *o)
{
	if (!o)
		return !config.filter_pid && !config.filter_comm_enabled &&
		       !config.filter_mntns_enabled && !config.filter_tree_enabled;
	if (config.filter_pid && o->pid != config.filter_pid)
		return false;
	if (config.filter_comm_enabled) {
		for (int i = 0; i < TASK_COMM_LEN; i++) {
			if (o->comm[i] != config.filter_comm[i])
				return false;
			if (!o->comm[i])
				break;
		}
	}
	if (config.filter_mntns_enabled) {
		__u8 *decision = bpf_map_lookup_elem(&mntns_decisions, &o->mntns_seq);

		/* Undecided: through, for user space to decide. */
		if (decision && *decision == MNTNS_DENY)
			return false;
	}
	if (config.filter_tree_enabled && !bpf_map_lookup_elem(&traced_tgids, &o->pid))
		return false;
	return true;
}

/* A wakeup is an interrupt (irq_work) on this CPU: costly at hundreds of
 * thousands of events a second. */
#define WAKEUP_WINDOW 1024

/* Wake the reader as the queue grows past config.wakeup_bytes, not for
 * every record after that (a busy reader reads on its own timer); it also
 * polls on a timer, so a quiet system still sees its few events promptly.
 * The window, not one exact size: records of other CPUs may land between
 * this one's reservation and the query. */
static __always_inline long wakeup_flags(void *ring)
{
	__u64 queued;

	if (!config.wakeup_bytes)
		return 0;
	queued = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	if (queued >= config.wakeup_bytes && queued < config.wakeup_bytes + WAKEUP_WINDOW)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/*
 * Without BTF-typed pointers every field costs a bpf_probe_read_kernel();
 * the addresses, ports and family all sit in the first bytes of struct
 * sock_common, so one read of those bytes replaces six. Offsets are CO-RE
 * relocated constants; false if this kernel's layout puts a field beyond
 * the bytes read (the caller then reads field by field).
 */
#define TUPLE_BYTES 96
#define TUPLE_FIELD(buf, type, field) \
	(*(type *)((buf) + bpf_core_field_offset(struct sock_common, field)))

static __always_inline bool read_tuple_at_once(struct sock *sk, struct event *e)
{
	__u8 buf[TUPLE_BYTES];
	__u16 family;

	if (bpf_core_field_offset(struct sock_common, skc_v6_rcv_saddr) + 16 > TUPLE_BYTES ||
	    bpf_core_field_offset(struct sock_common, skc_v6_daddr) + 16 > TUPLE_BYTES ||
	    bpf_core_field_offset(struct sock_common, skc_family) + 2 > TUPLE_BYTES ||
	    bpf_core_field_offset(struct sock_common, skc_dport) + 2 > TUPLE_BYTES ||
	    bpf_core_field_offset(struct sock_common, skc_daddr) + 4 > TUPLE_BYTES ||
	    bpf_core_field_offset(struct sock_common, skc_rcv_saddr) + 4 > TUPLE_BYTES)
		return false;
	if (bpf_probe_read_kernel(buf, sizeof(buf), sk))
		return false;
	family = TUPLE_FIELD(buf, __u16, skc_family);
	e->family = family;
	e->dport = bpf_ntohs(TUPLE_FIELD(buf, __u16, skc_dport));
	if (family == AF_INET) {
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		*(__u32 *)e->saddr = TUPLE_FIELD(buf, __u32, skc_rcv_saddr);
		*(__u32 *)e->daddr = TUPLE_FIELD(buf, __u32, skc_daddr);
	} else {
		__builtin_memcpy(e->saddr, &TUPLE_FIELD(buf, struct in6_addr, skc_v6_rcv_saddr), 16);
		__builtin_memcpy(e->daddr, &TUPLE_FIELD(buf, struct in6_addr, skc_v6_daddr), 16);
	}
	return true;
}

static __always_inline void emit(struct sock *sk, __u8 type,
				 const struct owner *o, __u16 error, const bool btf)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&events, &cpu);
	struct event *e = 0;
	__u16 family;

	if (ring)
		e = bpf_ringbuf_reserve(ring, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&lost, &zero);

		if (count)
			*count += 1;
		return;
	}

	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->error = error;
	e->type = type;
	/* inet_sport, not skc_num: a closing socket's port is released (skc_num
	 * zeroed) before the tracepoint fires on recent kernels. It lies beyond
	 * struct sock: read directly through the tcp_sock the verifier gets from
	 * bpf_skc_to_tcp_sock() (NULL only for a socket that is not TCP). */
	if (btf) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

		e->sport = tp ? bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport) : 0;
	} else {
		e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	}
	if (btf || !read_tuple_at_once(sk, e)) {
		family = KREAD(btf, sk, __sk_common.skc_family);
		e->family = family;
		e->dport = bpf_ntohs(KREAD(btf, sk, __sk_common.skc_dport));
		if (family == AF_INET) {
			__builtin_memset(e->saddr, 0, sizeof(e->saddr));
			__builtin_memset(e->daddr, 0, sizeof(e->daddr));
			if (btf) {
				*(__u32 *)e->saddr = sk->__sk_common.skc_rcv_saddr;
				*(__u32 *)e->daddr = sk->__sk_common.skc_daddr;
			} else {
				bpf_core_read(e->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
				bpf_core_read(e->daddr, 4, &sk->__sk_common.skc_daddr);
			}
		} else if (btf) {
			__builtin_memcpy(e->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
			__builtin_memcpy(e->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
		} else {
			bpf_core_read(e->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
			bpf_core_read(e->daddr, 16, &sk->__sk_common.skc_v6_daddr);
		}
	}
	if (btf)
		e->netns_id = sk->__sk_common.skc_net.net->ns.inum;
	else
		e->netns_id = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (o) {
		e->cgroup_id = o->cgroup_id;
		e->mntns_seq = o->mntns_seq;
		e->mntns_id = o->mntns_id;
		e->pid = o->pid;
		e->tid = o->tid;
		e->uid = o->uid;
		e->gid = o->gid;
		__builtin_memcpy(e->comm, o->comm, TASK_COMM_LEN);
	} else {
		e->cgroup_id = 0;
		e->mntns_seq = 0;
		e->mntns_id = 0;
		e->pid = 0;
		e->tid = 0;
		e->uid = 0;
		e->gid = 0;
		__builtin_memset(e->comm, 0, TASK_COMM_LEN);
	}
	bpf_ringbuf_submit(e, wakeup_flags(ring));
}

static __always_inline bool wanted(__u32 kind)
{
	return config.kinds & kind;
}

/* Emits C/A/X for a known process, U for an unknown one, if selected. */
static __always_inline void emit_attributed(struct sock *sk, __u8 type, __u32 kind,
					    const struct owner *o, __u16 error, const bool btf)
{
	if (!o) {
		if (wanted(KIND_UNKNOWN) && owner_allowed(0))
			emit(sk, EVENT_UNKNOWN, 0, error, btf);
		return;
	}
	if (wanted(kind) && owner_allowed(o))
		emit(sk, type, o, error, btf);
}

static __always_inline void on_close(struct sock *sk, const bool btf)
{
	__u64 key = (__u64)sk;
	struct owner *owner = bpf_map_lookup_elem(&owners, &key);
	const struct owner *who = owner;
	struct owner current;

	if (KREAD(btf, sk, sk_lock.owned)) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();

		/* Mostly the thread that opened it: its record is the closer's. */
		if ((!owner || owner->tid != tid) && !current_is_kthread()) {
			owner_from_current(&current);
			/* An exiting task closes its sockets after dropping its
			 * namespaces; its mount namespace is still the owner's. */
			if (!current.mntns_id && owner) {
				current.mntns_id = owner->mntns_id;
				current.mntns_seq = owner->mntns_seq;
			}
			who = &current;
		}
	}
	emit_attributed(sk, EVENT_CLOSE, KIND_CLOSE, who, 0, btf);
	if (owner)
		bpf_map_delete_elem(&owners, &key);
}

/*
 * Whether a state change makes an event or changes the owners map: 4 of
 * the 10 a connection goes through. The others (LISTEN, SYN_RECV ->
 * ESTABLISHED, FIN_WAIT2, TIME_WAIT, ...) leave before reading anything.
 */
static __always_inline bool acts_on(int oldstate, int newstate)
{
	return newstate == TCP_SYN_SENT || oldstate == TCP_SYN_SENT ||
	       (is_open(oldstate) && !is_open(newstate)) ||
	       (oldstate == TCP_SYN_RECV && newstate == TCP_CLOSE);
}

/* A state change acts_on() accepted. */
static __always_inline int handle_set_state(struct sock *sk, int oldstate, int newstate,
					    const bool btf)
{
	__u64 key = (__u64)sk;
	struct owner *owner;

	if (newstate == TCP_SYN_SENT) {
		struct owner current;

		if (KREAD(btf, sk, sk_protocol) != IPPROTO_TCP)
			return 0;
		owner_from_current(&current);
		bpf_map_update_elem(&owners, &key, &current, BPF_ANY);
		return 0;
	}
	if (oldstate == TCP_SYN_SENT) {
		if (KREAD(btf, sk, sk_protocol) != IPPROTO_TCP)
			return 0;
		owner = bpf_map_lookup_elem(&owners, &key);
		if (newstate == TCP_ESTABLISHED) {
			emit_attributed(sk, EVENT_CONNECT, KIND_CONNECT, owner, 0, btf);
		} else if (newstate == TCP_CLOSE) {
			/* sk_err is set before tcp_done(); 0 means the
			 * application gave up (closed) before an answer. */
			__u16 err = KREAD(btf, sk, sk_err);

			if (!err)
				err = ECONNABORTED;
			emit_attributed(sk, EVENT_CONNECT, KIND_CONNECT_FAILED, owner, err, btf);
			if (owner)
				bpf_map_delete_elem(&owners, &key);
		}
		return 0;
	}
	if (is_open(oldstate) && !is_open(newstate)) {
		if (KREAD(btf, sk, sk_protocol) != IPPROTO_TCP)
			return 0;
		on_close(sk, btf);
		return 0;
	}
	/* SYN_RECV -> CLOSE: accepted (TCP Fast Open), never established. */
	bpf_map_delete_elem(&owners, &key);
	return 0;
}

/*
 * Rescuing the state changes the kernel skips.
 *
 * The kernel runs a program of a tracepoint at most once at a time on a
 * CPU. When an interrupt arrives while tcp_set_state runs in process
 * context, and the softirq that follows changes the state of another
 * socket, the kernel skips tcp_set_state for that change (it counts it in
 * the program's recursion_misses): its event would be lost. So a second
 * program, rescue_state, is attached to the same tracepoint after it. The
 * kernel calls both, in that order, for every state change; when it skips
 * tcp_set_state because the interrupted frame is running it, rescue_state
 * is not running and is called. It handles the state change when, and only
 * when, tcp_set_state did not run for this very call.
 *
 * How it knows: tcp_set_state first writes a token of its call, the address
 * of its arguments (on the stack of this call of the tracepoint), the
 * socket and the two states, and rescue_state compares. Calls nest only
 * across stacks: process context on the task's stack, softirq on the
 * interrupt stack (or on a task's stack when no other call is under way on
 * this CPU, as in ksoftirqd), and no two calls on the same stack overlap.
 * So with one slot per stack, the slot rescue_state reads holds the token
 * of its own call if tcp_set_state ran for it, whatever ran nested in
 * between. user space counts what is left: runs skipped minus rescued.
 */
struct call_token {
	__u64 args; /* address of the tracepoint's arguments */
	__u64 sk;
	__u64 states; /* oldstate << 32 | newstate */
};

/* Per CPU: [0] for calls on a task's stack, [1] on the interrupt stack. */
struct call_slots {
	struct call_token on_stack[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct call_slots);
} state_calls SEC(".maps");

/* State changes handled by rescue_state, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rescued SEC(".maps");

/* Without CONFIG_VMAP_STACK the area is not known: 16 KiB is x86-64's and
 * arm64's THREAD_SIZE (only KASAN kernels have larger stacks). */
#define DEFAULT_STACK_BYTES 16384

/* The slot of a call whose arguments are at `args`: 0 on the task's stack. */
static __always_inline struct call_token *call_slot(const void *args)
{
	struct task_struct *task;
	struct vm_struct *area = 0;
	struct call_slots *slots;
	__u64 base, size = DEFAULT_STACK_BYTES;
	__u32 zero = 0;

	slots = bpf_map_lookup_elem(&state_calls, &zero);
	if (!slots)
		return 0;
	if (HAVE_TASK_BTF) {
		task = bpf_get_current_task_btf();
		base = (__u64)task->stack;
		if (bpf_core_field_exists(task->stack_vm_area))
			area = task->stack_vm_area;
		if (area)
			size = area->size;
	} else {
		task = (struct task_struct *)bpf_get_current_task();
		base = (__u64)BPF_CORE_READ(task, stack);
		if (bpf_core_field_exists(task->stack_vm_area))
			area = BPF_CORE_READ(task, stack_vm_area);
		if (area)
			size = BPF_CORE_READ(area, size);
	}
	return &slots->on_stack[(__u64)args - base < size ? 0 : 1];
}

static __always_inline __u64 states_of(int oldstate, int newstate)
{
	return (__u64)(__u32)oldstate << 32 | (__u32)newstate;
}

static __always_inline void mark_handled(const void *args, const struct sock *sk,
					 int oldstate, int newstate)
{
	struct call_token *slot = call_slot(args);

	if (!slot)
		return;
	slot->args = (__u64)args;
	slot->sk = (__u64)sk;
	slot->states = states_of(oldstate, newstate);
}

/* Whether tcp_set_state ran for this call; clears the token. */
static __always_inline bool was_handled(const void *args, const struct sock *sk,
					int oldstate, int newstate)
{
	struct call_token *slot = call_slot(args);

	if (!slot)
		return true;
	if (slot->args != (__u64)args || slot->sk != (__u64)sk ||
	    slot->states != states_of(oldstate, newstate))
		return false;
	/* A later call at the same address must not match a stale token. */
	slot->args = 0;
	return true;
}

static __always_inline int rescue(const void *args, struct sock *sk, int oldstate,
				  int newstate, const bool btf)
{
	__u32 zero = 0;
	__u64 *count;

	if (was_handled(args, sk, oldstate, newstate))
		return 0;
	count = bpf_map_lookup_elem(&rescued, &zero);
	if (count)
		*count += 1;
	if (!acts_on(oldstate, newstate))
		return 0;
	return handle_set_state(sk, oldstate, newstate, btf);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_set_state_btf, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	/* Every call, so that user space can count skipped calls exactly. */
	mark_handled(ctx, sk, oldstate, newstate);
	if (!acts_on(oldstate, newstate))
		return 0;
	return handle_set_state((struct sock *)sk, oldstate, newstate, true);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(rescue_state_btf, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	return rescue(ctx, (struct sock *)sk, oldstate, newstate, true);
}

/* The same pair for kernels whose BTF cannot type the tracepoint. */
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(tcp_set_state_raw, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	/* Every call, so that user space can count skipped calls exactly. */
	mark_handled(ctx, sk, oldstate, newstate);
	if (!acts_on(oldstate, newstate))
		return 0;
	return handle_set_state((struct sock *)sk, oldstate, newstate, false);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(rescue_state_raw, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	return rescue(ctx, (struct sock *)sk, oldstate, newstate, false);
}

/* The TCP (IPv4 or IPv6) socket of a socket file, or NULL. */
static __always_inline struct sock *tcp_sock_from_socket_file(struct file *file)
{
	struct socket *socket;
	struct sock *sk;
	__u16 family;

	socket = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(socket, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return sk;
}

/* The TCP socket of any file, or NULL. */
static __always_inline struct sock *tcp_sock_from_file(struct file *file)
{
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	return tcp_sock_from_socket_file(file);
}

/* The TCP socket behind a descriptor accept() returned: a socket file. */
static __always_inline struct sock *tcp_sock_from_accepted_fd(long fd)
{
	struct file **fds;
	struct file *file = 0;

	if (fd < 0)
		return 0;
	if (HAVE_TASK_BTF) {
		struct fdtable *fdt = bpf_get_current_task_btf()->files->fdt;

		if (fd >= fdt->max_fds)
			return 0;
		fds = fdt->fd;
	} else {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);

		if (fd >= BPF_CORE_READ(fdt, max_fds))
			return 0;
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	return tcp_sock_from_socket_file(file);
}

/* Tracepoint records of syscalls (see events/syscalls/<name>/format). */
struct syscall_exit_ctx {
	__u64 common;
	__s32 syscall_nr;
	__s32 pad;
	long ret;
};

static __always_inline int handle_accept(long fd)
{
	struct owner current;
	struct sock *sk;
	__u64 key;

	if (fd < 0)
		return 0;
	sk = tcp_sock_from_accepted_fd(fd);
	if (!sk)
		return 0;
	key = (__u64)sk;
	owner_from_current(&current);
	bpf_map_update_elem(&owners, &key, &current, BPF_ANY);
	if (wanted(KIND_ACCEPT) && owner_allowed(&current))
		emit(sk, EVENT_ACCEPT, &current, 0, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tcp_accept4_exit(struct syscall_exit_ctx *ctx)
{
	return handle_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tcp_accept_exit(struct syscall_exit_ctx *ctx)
{
	return handle_accept(ctx->ret);
}

/*
 * Run once by user space after attaching: records an owner for every open
 * connection that already existed, so that one reset or timed out in
 * softirq is still attributed (X, not U). Existing entries (connections
 * seen live since attaching) are kept.
 */
SEC("iter/task_file")
int seed_owners(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct owner owner;
	struct sock *sk;
	__u64 key;

	if (!task || !file)
		return 0;
	sk = tcp_sock_from_file(file);
	if (!sk || !is_open(BPF_CORE_READ(sk, __sk_common.skc_state)))
		return 0;
	key = (__u64)sk;
	owner.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	owner.mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	owner.mntns_seq = config.filter_mntns_enabled ?
				  mntns_seq_of(BPF_CORE_READ(task, nsproxy, mnt_ns), false) : 0;
	owner.pid = BPF_CORE_READ(task, tgid);
	owner.tid = BPF_CORE_READ(task, pid);
	owner.uid = BPF_CORE_READ(task, cred, uid.val);
	owner.gid = BPF_CORE_READ(task, cred, gid.val);
	BPF_CORE_READ_STR_INTO(&owner.comm, task, comm);
	bpf_map_update_elem(&owners, &key, &owner, BPF_NOEXIST);
	return 0;
}

/*
 * The process tree (config.filter_tree_enabled): user space adds the root
 * process to traced_tgids before it runs anything; every process a member
 * forks is added before the child first runs (sched_process_fork runs in
 * the parent, before the child is woken). A member stays until it is
 * reaped, not only until it exits: an exiting process still closes its
 * sockets (a connect it leaves unfinished fails with ECONNABORTED then),
 * after sched_process_exit. Loaded only with the filter. Raw tracepoints:
 * forks and exits are rare, and raw_tp works on every kernel tcpgadget
 * supports.
 */

/* Processes of the tree that could not be added (map full), per CPU:
 * their events are lost. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tree_full SEC(".maps");

const struct tree_member *unused_tree_member __attribute__((unused));

SEC("raw_tp/sched_process_fork")
int BPF_PROG(tree_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	struct tree_member member = {};
	__u32 zero = 0;
	__u64 *count;

	/* A new thread is in its process's group, there already or not. */
	if (child_tgid == parent_tgid || !bpf_map_lookup_elem(&traced_tgids, &parent_tgid))
		return 0;
	member.start_time = BPF_CORE_READ(child, start_time);
	if (!bpf_map_update_elem(&traced_tgids, &child_tgid, &member, BPF_ANY))
		return 0;
	count = bpf_map_lookup_elem(&tree_full, &zero);
	if (count)
		*count += 1;
	return 0;
}

/* Every thread of the group has exited once signal->live is 0 (it is
 * decremented before the tracepoint); the leader may exit before others. */
SEC("raw_tp/sched_process_exit")
int BPF_PROG(tree_exit, struct task_struct *task)
{
	struct tree_member *member;
	__u32 tgid;

	if (BPF_CORE_READ(task, signal, live.counter))
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	member = bpf_map_lookup_elem(&traced_tgids, &tgid);
	if (member)
		member->exited = 1;
	return 0;
}

/*
 * Reaped: the leader's task is freed last, after every thread's. A thread
 * (or a leader replaced by an exec in another thread) has pid != tgid. The
 * start time tells the member from a later process that reused its pid
 * before this task was freed (an RCU grace period after the pid was).
 */
SEC("raw_tp/sched_process_free")
int BPF_PROG(tree_free, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct tree_member *member;

	if (BPF_CORE_READ(task, pid) != tgid)
		return 0;
	member = bpf_map_lookup_elem(&traced_tgids, &tgid);
	if (member && (!member->start_time || member->start_time == BPF_CORE_READ(task, start_time)))
		bpf_map_delete_elem(&traced_tgids, &tgid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
