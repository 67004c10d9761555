/**
 * The contract between the kernel program and user space, as
 * bpf/tcptracer.h declares it: the layout of `struct tcptracer_config`
 * (written before load) and of `struct event` (read from the rings), the
 * event kinds a config selects (`enum event_kind`), the type code of each
 * event (`enum event_type`) and the container filter's decisions (`enum
 * mntns_decision`). Every value here is checked against the
 * BTF of the compiled object by tests/bpf_object_test.ts, so an edit of one
 * side without the other fails there.
 *
 * @module
 */

/** Offsets in `struct event`, and its size. */
export const EVENT_LAYOUT = {
  size: 112,
  timestamp_ns: 0,
  cgroup_id: 8,
  mntns_id: 16,
  netns_id: 20,
  pid: 24,
  tid: 28,
  uid: 32,
  gid: 36,
  saddr: 40,
  daddr: 56,
  sport: 72,
  dport: 74,
  family: 76,
  error: 78,
  type: 80,
  comm: 84,
  mntns_seq: 104,
} as const;

/** Offsets in `struct tcptracer_config`, and its size. */
export const CONFIG_LAYOUT = {
  size: 40,
  filter_pid: 0,
  kinds: 4,
  wakeup_bytes: 8,
  filter_comm_enabled: 16,
  filter_mntns_enabled: 17,
  filter_tree_enabled: 18,
  filter_comm: 24,
} as const;

/** Offsets in `struct tree_member` (the traced tree's map values), and its size. */
export const TREE_MEMBER_LAYOUT = {
  size: 16,
  start_time: 0,
  exited: 8,
} as const;

/** `enum event_kind`: bits of `tcptracer_config.kinds`, the events the kernel emits. */
export const EVENT_KIND = {
  /** Successful connects. */
  KIND_CONNECT: 0x1,
  /** Failed connects (`event.error` set). */
  KIND_CONNECT_FAILED: 0x2,
  KIND_ACCEPT: 0x4,
  KIND_CLOSE: 0x8,
  /** Established or closed, no process known. */
  KIND_UNKNOWN: 0x10,
  KIND_ALL: 0x1f,
} as const;

/** `enum event_type`: `event.type`, the T column. */
export const EVENT_TYPE = {
  EVENT_CONNECT: 1,
  EVENT_ACCEPT: 2,
  EVENT_CLOSE: 3,
  EVENT_UNKNOWN: 4,
} as const;

/**
 * `enum mntns_decision`: the container filter's decision about a mount
 * namespace, the values of the `mntns_decisions` map (no entry: undecided).
 */
export const MNTNS_DECISION = {
  MNTNS_ALLOW: 1,
  MNTNS_DENY: 2,
} as const;

/** The T column's letter of each `event.type` code. */
export const TYPE_LETTERS: Readonly<Record<number, "C" | "A" | "X" | "U">> = {
  [EVENT_TYPE.EVENT_CONNECT]: "C",
  [EVENT_TYPE.EVENT_ACCEPT]: "A",
  [EVENT_TYPE.EVENT_CLOSE]: "X",
  [EVENT_TYPE.EVENT_UNKNOWN]: "U",
};

/** Bytes of a command name the kernel keeps (`TASK_COMM_LEN`, with its NUL). */
export const TASK_COMM_LEN = 16;

/** `event.family` values. */
export const AF_INET = 2;
export const AF_INET6 = 10;
