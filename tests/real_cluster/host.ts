/**
 * What the test cluster changes on the host outside its state directory,
 * and how `down` puts it back: the bridge and its veths, iptables rules
 * (ours, kube-proxy's, kubelet's, the portmap plugin's), sysctls set by
 * kubelet, kube-proxy and us, kubelet's files under /var/log, libcni's
 * cache, the pods' cgroups, and mounts.
 *
 * @module
 */

import {
  BRIDGE,
  CNI_NETWORK,
  HOST_DIRS,
  ISOLATION_CHAINS,
  NODE_IP,
  SERVICE_CIDR,
  state,
} from "./layout.ts";
import { ClusterError, exists, hasCommand, readText, run, say, writeFileAtomic } from "./util.ts";

/**
 * Sysctls that kubelet (its kernel tunables), kube-proxy (bridge netfilter)
 * and the cluster's routing (forwarding between pods and services) change:
 * recorded before `up`, restored by `down`.
 */
const SYSCTLS = [
  "net/ipv4/ip_forward",
  "net/bridge/bridge-nf-call-iptables",
  "net/bridge/bridge-nf-call-ip6tables",
  "net/ipv4/conf/all/route_localnet",
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];

interface HostRecord {
  sysctls: Record<string, string>;
  /** Entries of these directories before `up` (absent: the directory did not exist). */
  preexisting: Record<string, string[] | null>;
}

function listDir(path: string): string[] | null {
  try {
    return [...Deno.readDirSync(path)].map((entry) => entry.name).sort();
  } catch {
    return null;
  }
}

const RECORDED_DIRS = [
  HOST_DIRS.podLogs,
  HOST_DIRS.containerLogs,
  HOST_DIRS.cniCache,
  `${HOST_DIRS.cniCache}/results`,
  HOST_DIRS.shimSockets,
  HOST_DIRS.kubeletDefaultRoot,
];

/** Records what `down` must restore; kept from the first `up` if one was interrupted. */
export function recordHost(): void {
  if (exists(state.hostRecord)) return;
  const sysctls: Record<string, string> = {};
  for (const name of SYSCTLS) {
    const value = readText(`/proc/sys/${name}`);
    if (value !== undefined) sysctls[name] = value.trim();
  }
  const preexisting: Record<string, string[] | null> = {};
  for (const dir of RECORDED_DIRS) preexisting[dir] = listDir(dir);
  Deno.mkdirSync(state.dir, { recursive: true });
  writeFileAtomic(state.hostRecord, JSON.stringify({ sysctls, preexisting }, null, 2) + "\n");
}

function readRecord(): HostRecord | undefined {
  const text = readText(state.hostRecord);
  if (!text) return undefined;
  try {
    return JSON.parse(text) as HostRecord;
  } catch {
    return undefined;
  }
}

function writeSysctl(name: string, value: string): void {
  try {
    Deno.writeTextFileSync(`/proc/sys/${name}`, `${value}\n`);
  } catch (error) {
    throw new ClusterError(
      `cannot set ${name.replaceAll("/", ".")}=${value}: ${
        error instanceof Error ? error.message : error
      }`,
    );
  }
}

/**
 * The pod network's host side: the bridge with the node's address (before
 * kubelet starts: it listens there), forwarding (services: pod to DNAT'ed
 * pod) and bridge netfilter (so replies between pods on the bridge pass
 * conntrack), and rules that keep pod traffic on this machine.
 */
export async function setUpNetwork(): Promise<void> {
  if (!exists(`/sys/class/net/${BRIDGE}`)) {
    await run("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  }
  const addrs = await run("ip", ["-o", "-4", "addr", "show", "dev", BRIDGE]);
  if (!addrs.stdout.includes(` ${NODE_IP}/24 `)) {
    await run("ip", ["addr", "add", `${NODE_IP}/24`, "dev", BRIDGE]);
  }
  await run("ip", ["link", "set", BRIDGE, "up"]);
  writeSysctl("net/ipv4/ip_forward", "1");
  if (exists("/proc/sys/net/bridge/bridge-nf-call-iptables")) {
    writeSysctl("net/bridge/bridge-nf-call-iptables", "1");
  }
  await addIsolationRules();
}

/**
 * Pod traffic stays here: nothing forwarded between the bridge and any other
 * interface, and no connection to a service address that no kube-proxy rule
 * translated (which would otherwise follow the default route out).
 */
async function addIsolationRules(): Promise<void> {
  const { forward, output } = ISOLATION_CHAINS;
  const save = (await run("iptables-save", ["-t", "filter"])).stdout;
  const lines = ["*filter"];
  if (!save.includes(`:${forward} `)) lines.push(`:${forward} - [0:0]`);
  if (!save.includes(`:${output} `)) lines.push(`:${output} - [0:0]`);
  lines.push(`-F ${forward}`, `-F ${output}`);
  lines.push(`-A ${forward} -i ${BRIDGE} ! -o ${BRIDGE} -j DROP`);
  lines.push(`-A ${forward} ! -i ${BRIDGE} -o ${BRIDGE} -j DROP`);
  lines.push(`-A ${output} -d ${SERVICE_CIDR} -j REJECT`);
  if (!save.includes(`-A FORWARD -j ${forward}`)) lines.push(`-I FORWARD 1 -j ${forward}`);
  if (!save.includes(`-A OUTPUT -j ${output}`)) lines.push(`-I OUTPUT 1 -j ${output}`);
  lines.push("COMMIT", "");
  await run("iptables-restore", ["--noflush"], { stdin: lines.join("\n") });
  await addNoTrackRules();
}

/**
 * Loopback traffic untracked by conntrack. kube-proxy's rules make the
 * kernel track every connection, and loopback churn (this project's
 * benchmarks and tests open and close 100,000 connections in seconds, each
 * then held 120 s in TIME_WAIT) fills the table: the kernel then drops
 * packets ("nf_conntrack: table full") and those tests hang. Nothing of the
 * cluster translates 127.0.0.0/8 or ::1 (no localhost NodePorts).
 */
async function addNoTrackRules(): Promise<void> {
  const chain = ISOLATION_CHAINS.notrack;
  for (
    const [save, restore, loopback] of [
      ["iptables-save", "iptables-restore", "127.0.0.0/8"],
      ["ip6tables-save", "ip6tables-restore", "::1/128"],
    ]
  ) {
    if (!hasCommand(save)) continue;
    const dump = (await run(save, ["-t", "raw"], { allowFail: true })).stdout;
    const lines = ["*raw"];
    if (!dump.includes(`:${chain} `)) lines.push(`:${chain} - [0:0]`);
    lines.push(`-F ${chain}`, `-A ${chain} -s ${loopback} -d ${loopback} -j CT --notrack`);
    for (const hook of ["PREROUTING", "OUTPUT"]) {
      if (!dump.includes(`-A ${hook} -j ${chain}`)) lines.push(`-I ${hook} 1 -j ${chain}`);
    }
    lines.push("COMMIT", "");
    await run(restore, ["--noflush"], { stdin: lines.join("\n") });
  }
}

/** Chains of ours, kube-proxy's and kubelet's (KUBE-*), the CNI portmap plugin's (CNI-*). */
function isClusterChain(chain: string): boolean {
  return chain.startsWith("KUBE-") || chain.startsWith("CNI-") ||
    chain.startsWith("TCPGADGET-E2E-");
}

/**
 * Removes every rule jumping to a cluster chain and the chains themselves,
 * in every table, for IPv4 and IPv6 (iptables-restore takes iptables-save's
 * own rule text back as `-D`, quoting and all).
 */
export async function removeIptablesRules(): Promise<void> {
  for (
    const [save, restore] of [["iptables-save", "iptables-restore"], [
      "ip6tables-save",
      "ip6tables-restore",
    ]]
  ) {
    if (!hasCommand(save)) continue;
    const dump = (await run(save, [], { allowFail: true })).stdout;
    const script: string[] = [];
    let table = "";
    let deletes: string[] = [];
    let chains: string[] = [];
    const flush = () => {
      if (table && (deletes.length || chains.length)) {
        script.push(
          `*${table}`,
          ...deletes,
          ...chains.map((c) => `-F ${c}`),
          ...chains.map((c) => `-X ${c}`),
          "COMMIT",
        );
      }
      deletes = [];
      chains = [];
    };
    for (const line of dump.split("\n")) {
      if (line.startsWith("*")) {
        flush();
        table = line.slice(1).trim();
      } else if (line.startsWith(":")) {
        const chain = line.slice(1).split(" ")[0];
        if (isClusterChain(chain)) chains.push(chain);
      } else if (line.startsWith("-A ")) {
        const chain = line.split(" ")[1];
        const target = line.match(/ -[jg] (\S+)/)?.[1] ?? "";
        // Rules inside our chains go with the chain; rules elsewhere that jump in are deleted.
        if (!isClusterChain(chain) && isClusterChain(target)) deletes.push(`-D ${line.slice(3)}`);
      }
    }
    flush();
    if (script.length) await run(restore, ["--noflush"], { stdin: script.join("\n") + "\n" });
  }
}

/** The veths on our bridge, then the bridge. */
export async function removeNetwork(): Promise<void> {
  if (!exists(`/sys/class/net/${BRIDGE}`)) return;
  for (const entry of listDir(`/sys/class/net/${BRIDGE}/brif`) ?? []) {
    await run("ip", ["link", "del", entry], { allowFail: true });
  }
  await run("ip", ["link", "del", BRIDGE], { allowFail: true });
}

/** Puts back the sysctls recorded before `up`. */
export function restoreSysctls(): void {
  const record = readRecord();
  if (!record) return;
  for (const [name, value] of Object.entries(record.sysctls)) {
    const now = readText(`/proc/sys/${name}`)?.trim();
    if (now !== undefined && now !== value) {
      try {
        Deno.writeTextFileSync(`/proc/sys/${name}`, `${value}\n`);
      } catch {
        say(`could not restore ${name.replaceAll("/", ".")} to ${value}`);
      }
    }
  }
}

/**
 * Removes what kubelet and libcni left in fixed host paths: the links in
 * /var/log/containers to this kubelet's pod logs (below the state dir;
 * other tests of this project write links there too: nothing else is
 * touched), libcni's cache files that were not there before `up`, and those
 * directories if `up` made them and they are empty.
 */
export async function removeHostFiles(): Promise<void> {
  const record = readRecord();
  for (const name of listDir(HOST_DIRS.containerLogs) ?? []) {
    let target = "";
    try {
      target = Deno.readLinkSync(`${HOST_DIRS.containerLogs}/${name}`);
    } catch {
      continue; // not a link: not kubelet's
    }
    if (target.startsWith(`${state.podLogs}/`)) {
      await removePath(`${HOST_DIRS.containerLogs}/${name}`);
    }
  }
  // libcni's cache: our network's files whatever the record says, and the
  // CRI plugin's loopback network's (cni-loopback-*) that were not there before.
  const results = `${HOST_DIRS.cniCache}/results`;
  const before = new Set(record?.preexisting[results] ?? []);
  for (const name of listDir(results) ?? []) {
    if (name.startsWith(`${CNI_NETWORK}-`) || (record && !before.has(name))) {
      await removePath(`${results}/${name}`);
    }
  }
  if (!record) return;
  // containerd 1.6 puts its shims' sockets there whatever its own state dir:
  // if `up` made the directory, what is left once our shims are gone is ours.
  // Likewise kubelet's device-plugins socket directory.
  for (const dir of [HOST_DIRS.shimSockets, HOST_DIRS.kubeletDefaultRoot]) {
    if (record.preexisting[dir] === null && exists(dir)) await removePath(dir);
  }
  // Deepest first, only if `up` created them and nothing else is in them.
  for (const dir of [...RECORDED_DIRS].reverse()) {
    if (record.preexisting[dir] === null && (listDir(dir) ?? ["x"]).length === 0) {
      try {
        Deno.removeSync(dir);
      } catch {
        // not empty after all
      }
    }
  }
}

async function removePath(path: string): Promise<void> {
  await run("rm", ["-rf", "--one-file-system", path], { allowFail: true });
}

/** Mount points at or below `dir`, deepest first (from this process's mountinfo). */
export function mountsUnder(dir: string): string[] {
  const info = readText("/proc/self/mountinfo") ?? "";
  const points = info.split("\n").filter(Boolean).map((line) =>
    // Field 5 is the mount point, with spaces etc. octal-escaped.
    line.split(" ")[4].replace(/\\([0-7]{3})/g, (_, oct) => String.fromCharCode(parseInt(oct, 8)))
  );
  return points.filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.split("/").length - a.split("/").length || b.length - a.length);
}

/** Unmounts everything at or below `dir` (lazily if busy). */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return;
    for (const point of points) {
      const result = await run("umount", [point], { allowFail: true });
      if (result.code !== 0) await run("umount", ["-l", point], { allowFail: true });
    }
  }
  const left = mountsUnder(dir);
  if (left.length) {
    throw new ClusterError(`cannot unmount ${left[0]} (and ${left.length - 1} more)`);
  }
}

/** The cgroup hierarchies mounted under /sys/fs/cgroup (v1 controllers, name=systemd, unified). */
function cgroupMounts(): string[] {
  const info = readText("/proc/self/mountinfo") ?? "";
  return info.split("\n").filter((line) => / - cgroup2? /.test(line)).map((line) =>
    line.split(" ")[4]
  );
}

/** Pids in the pods' cgroups (kubepods in any hierarchy). */
export function podCgroupPids(): number[] {
  const pids = new Set<number>();
  const walk = (dir: string) => {
    for (const pid of (readText(`${dir}/cgroup.procs`) ?? "").split("\n").filter(Boolean)) {
      pids.add(Number(pid));
    }
    for (const entry of listEntries(dir)) walk(`${dir}/${entry}`);
  };
  for (const mount of cgroupMounts()) {
    if (exists(`${mount}/kubepods`)) walk(`${mount}/kubepods`);
  }
  return [...pids];
}

function listEntries(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) => e.name);
  } catch {
    return [];
  }
}

/** Removes the kubepods cgroup trees (deepest first) in every hierarchy; returns what could not be. */
export function removePodCgroups(): string[] {
  const left: string[] = [];
  const remove = (dir: string) => {
    for (const entry of listEntries(dir)) remove(`${dir}/${entry}`);
    try {
      Deno.removeSync(dir);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) left.push(dir);
    }
  };
  for (const mount of cgroupMounts()) {
    if (exists(`${mount}/kubepods`)) remove(`${mount}/kubepods`);
  }
  return left;
}
