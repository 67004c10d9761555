/**
 * The names DNS answers gave to addresses, per network namespace, with
 * when each was seen: what {@link DestinationNames} looks a connection's
 * remote address up in. Bounded: names expire (the answer's TTL, kept at
 * least a few minutes) and the table holds a fixed number of addresses.
 *
 * @module
 */

import type { DnsAddressRecord } from "./dns_message.ts";

/** A name an answer gave an address. */
export interface LearnedName {
  /** The name asked for (the head of the CNAME chain). */
  name: string;
  /** From `name` to the address's owner, `name` first. */
  chain: readonly string[];
  /** When an answer first gave this name to the address (ns since the epoch). */
  firstSeenNs: bigint;
  /** When an answer last did. */
  lastSeenNs: bigint;
  /** When it is forgotten: the last answer's TTL after it (ns since the epoch). */
  expiresNs: bigint;
}

/** Options of {@link DnsNameTable}. */
export interface DnsNameTableOptions {
  /**
   * Addresses (per network namespace) kept at most; beyond, those
   * answered least recently are forgotten first. Default 65,536 (about
   * 30 MB at the most).
   */
  maxAddresses?: number;
  /** Names kept per address (the most recent). Default 4. */
  namesPerAddress?: number;
  /**
   * Seconds a name is kept at least, whatever its TTL: programs keep
   * answers longer than their TTL (and local records often have TTL 0).
   * Default 300.
   */
  minRetentionSec?: number;
  /** Seconds a name is kept at most, whatever its TTL. Default 86,400. */
  maxRetentionSec?: number;
}

const NS_PER_SEC = 1_000_000_000n;

/**
 * Names learned from DNS answers, by network namespace and address.
 *
 * @example
 * ```ts
 * import { DnsNameTable } from "./dns_name_table.ts";
 * import assert from "node:assert/strict";
 * const table = new DnsNameTable();
 * const s = 1_000_000_000n;
 * table.add(10n * s, 7, [{ address: "10.0.0.1", name: "a.test", chain: ["a.test"], ttl: 60 }]);
 * table.add(20n * s, 7, [{ address: "10.0.0.1", name: "b.test", chain: ["b.test"], ttl: 60 }]);
 * assert.equal(table.lookup(7, "10.0.0.1", 15n * s)?.name, "a.test"); // before b's answer
 * assert.equal(table.lookup(7, "10.0.0.1", 25n * s)?.name, "b.test"); // the most recent
 * assert.equal(table.lookup(8, "10.0.0.1", 25n * s), undefined); // another namespace
 * assert.equal(table.lookup(7, "10.0.0.1", 5n * s), undefined); // before any answer
 * ```
 */
export class DnsNameTable {
  // "netns address" -> names, least recently answered first. A Map keeps insertion
  // order: an address answered again is moved to the end, so the first
  // keys are the least recently answered.
  readonly #entries = new Map<string, LearnedName[]>();
  readonly #maxAddresses: number;
  readonly #namesPerAddress: number;
  readonly #minRetentionSec: number;
  readonly #maxRetentionSec: number;
  #addsSinceSweep = 0;

  constructor(options: DnsNameTableOptions = {}) {
    this.#maxAddresses = options.maxAddresses ?? 65_536;
    this.#namesPerAddress = options.namesPerAddress ?? 4;
    this.#minRetentionSec = options.minRetentionSec ?? 300;
    this.#maxRetentionSec = options.maxRetentionSec ?? 86_400;
  }

  /** Addresses (per network namespace) with a name. */
  get size(): number {
    return this.#entries.size;
  }

  /** Learns the names of one answer, seen at `seenNs` in namespace `netns`. */
  add(seenNs: bigint, netns: number, records: readonly DnsAddressRecord[]): void {
    for (const record of records) {
      const key = `${netns} ${record.address}`;
      const retention = Math.min(
        Math.max(record.ttl, this.#minRetentionSec),
        this.#maxRetentionSec,
      );
      const names = this.#entries.get(key) ?? [];
      const known = names.findIndex((n) => n.name === record.name);
      const learned: LearnedName = {
        name: record.name,
        chain: record.chain,
        firstSeenNs: seenNs,
        lastSeenNs: seenNs,
        expiresNs: seenNs + BigInt(Math.floor(retention)) * NS_PER_SEC,
      };
      if (known >= 0) {
        const before = names.splice(known, 1)[0];
        if (before.expiresNs >= seenNs) {
          // Asked again while still known: one name, known all along.
          if (before.firstSeenNs < learned.firstSeenNs) learned.firstSeenNs = before.firstSeenNs;
          if (before.lastSeenNs > seenNs) {
            learned.lastSeenNs = before.lastSeenNs;
            learned.expiresNs = before.expiresNs;
            learned.chain = before.chain;
          }
        }
      }
      // Answers arrive in order: the new one goes last, unless the source
      // handed out an older one late.
      let at = names.length;
      while (at > 0 && names[at - 1].lastSeenNs > learned.lastSeenNs) at--;
      names.splice(at, 0, learned);
      if (names.length > this.#namesPerAddress) {
        names.splice(0, names.length - this.#namesPerAddress);
      }
      this.#entries.delete(key);
      this.#entries.set(key, names);
    }
    while (this.#entries.size > this.#maxAddresses) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    this.#addsSinceSweep += records.length;
    if (this.#addsSinceSweep >= 4096) this.#sweep(seenNs);
  }

  /**
   * The name of `address` in namespace `netns` at time `atNs`: of the
   * names given by answers seen before `atNs` and not expired then, the one
   * answered most recently before `atNs`.
   */
  lookup(netns: number, address: string, atNs: bigint): LearnedName | undefined {
    const names = this.#entries.get(`${netns} ${address}`);
    if (!names) return undefined;
    let best: LearnedName | undefined;
    let bestNs = -1n;
    for (const learned of names) {
      if (learned.firstSeenNs >= atNs || learned.expiresNs <= atNs) continue;
      // Answered at least at firstSeenNs before atNs; at lastSeenNs if
      // that was before too (answers in between are not kept).
      const answeredNs = learned.lastSeenNs < atNs ? learned.lastSeenNs : learned.firstSeenNs;
      if (answeredNs > bestNs) {
        best = learned;
        bestNs = answeredNs;
      }
    }
    return best;
  }

  /** Forgets names expired a minute before `nowNs` (events are read a little late). */
  #sweep(nowNs: bigint): void {
    this.#addsSinceSweep = 0;
    const before = nowNs - 60n * NS_PER_SEC;
    for (const [key, names] of this.#entries) {
      const kept = names.filter((n) => n.expiresNs > before);
      if (kept.length === 0) this.#entries.delete(key);
      else if (kept.length !== names.length) this.#entries.set(key, kept);
    }
  }
}
