/**
 * The names of connections' destinations, as the connecting process knew
 * them: from DNS answers observed in the kernel in the connection's
 * network namespace before the connection (see bpf/dnssnoop.bpf.c), else
 * from the process's hosts file. What egress policies match host names
 * against.
 *
 * @module
 */

import { addressRecords, type DnsAnswerSource } from "./dns_answer.ts";
import { DnsNameTable, type DnsNameTableOptions } from "./dns_name_table.ts";
import { HostsFiles } from "./hosts_file.ts";
import { eventTimeNs } from "./event.ts";
import type { TraceEvent } from "./trace_event.ts";

/** What a destination address was called, and where that came from. */
export interface DestinationName {
  /** The name the process asked for (the head of the CNAME chain), lower case, no trailing dot. */
  name: string;
  /** "dns": a DNS answer seen in the connection's network namespace before the connect; "hosts": the process's hosts file. */
  source: "dns" | "hosts";
  /** From DNS: the names from `name` to the address's owner (CNAMEs), `name` first. */
  chain?: string[];
}

/** Names of remote addresses, as the connecting process knew them. */
export interface NameDirectory {
  nameOf(event: TraceEvent): DestinationName | undefined;
}

/** Options of {@link DestinationNames}. */
export interface DestinationNamesOptions {
  /** Where DNS answers come from (a `DnsSnooper`, dns_snooper.ts); none: hosts files only. */
  dns?: DnsAnswerSource;
  /** Hosts files of processes (default: `/etc/hosts` under `/proc/PID/root`); false: none. */
  hosts?: HostsFiles | false;
  /** Bounds of the names learned from DNS. */
  table?: DnsNameTableOptions;
}

/**
 * The {@link NameDirectory} of this host: names learned from DNS answers
 * and hosts files.
 *
 * Which name, when several: the most recent DNS answer for the address in
 * the connection's network namespace that arrived before the connection
 * (the connection's event time: when it was established or failed) and
 * has not expired (TTL, kept at least 5 minutes); else the first name of
 * the address in the process's hosts file; else none.
 *
 * Answers and connections come through separate rings, read at different
 * moments: before naming a connection, every answer that arrived before
 * it is read first (an answer reaches its process, and so causes a
 * connection, only after it is in the ring), so an answer that arrived
 * just before a connect counts even if the rings are read the other way
 * round.
 *
 * @example
 * ```ts
 * import { DestinationNames } from "./destination_name.ts";
 * import type { DnsAnswer } from "./dns_answer.ts";
 * import type { TraceEvent } from "./trace_event.ts";
 * import assert from "node:assert/strict";
 * // An answer for a.test (10.0.0.7), in namespace 9, at second 100.
 * const payload = Uint8Array.from([
 *   0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 97, 4, 116, 101, 115, 116, 0, 0, 1, 0, 1,
 *   0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 7,
 * ]);
 * const answers: DnsAnswer[] = [
 *   { timeNs: 100_000_000_000n, netns: 9, transport: "udp", payload, cut: false },
 * ];
 * const names = new DestinationNames({
 *   dns: { drain: (handle) => (answers.splice(0).forEach(handle), 200_000_000_000n) },
 *   hosts: false,
 * });
 * const connect = { daddr: "10.0.0.7", netns: 9, timeSec: 101, timeNsec: 0 } as TraceEvent;
 * assert.deepEqual(names.nameOf(connect), { name: "a.test", source: "dns", chain: ["a.test"] });
 * assert.equal(names.nameOf({ ...connect, netns: 8 }), undefined); // another namespace
 * assert.equal(names.nameOf({ ...connect, timeSec: 99 }), undefined); // before the answer
 * ```
 */
export class DestinationNames implements NameDirectory {
  readonly #dns: DnsAnswerSource | undefined;
  readonly #hosts: HostsFiles | undefined;
  readonly #table: DnsNameTable;
  // Every answer that arrived before this time has been read.
  #completeNs = -1n;

  constructor(options: DestinationNamesOptions = {}) {
    this.#dns = options.dns;
    this.#hosts = options.hosts === false ? undefined : options.hosts ?? new HostsFiles();
    this.#table = new DnsNameTable(options.table);
  }

  nameOf(event: TraceEvent): DestinationName | undefined {
    if (!event.daddr) return undefined;
    if (this.#dns) {
      const atNs = eventTimeNs(event);
      if (atNs >= this.#completeNs) this.update();
      const learned = this.#table.lookup(event.netns, event.daddr, atNs);
      if (learned) return { name: learned.name, source: "dns", chain: [...learned.chain] };
    }
    const hosted = this.#hosts?.nameOf(event.pid, event.mntns, event.daddr);
    return hosted === undefined ? undefined : { name: hosted, source: "hosts" };
  }

  /**
   * Reads the hosts file of process `pid` now, so that the processes of its
   * mount namespace are named from it even if they exit before their
   * connections are read (see HostsFiles.remember).
   */
  rememberHostsOf(pid: number): void {
    this.#hosts?.remember(pid);
  }

  /**
   * Reads the DNS answers that have arrived. {@link nameOf} does when it
   * needs to; call it also while no connection comes, so that the
   * answers' ring does not fill (every 100 ms or so).
   */
  update(): void {
    if (!this.#dns) return;
    this.#completeNs = this.#dns.drain((answer) => {
      this.#table.add(answer.timeNs, answer.netns, addressRecords(answer));
    });
  }
}
