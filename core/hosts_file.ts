/**
 * Names from a process's hosts file (`/etc/hosts` as the process sees it,
 * read through `/proc/PID/root`): read when first needed, parsed once per
 * file content (device, inode, size, modification time), and remembered
 * per mount namespace, so that a process that has exited since its
 * connection is still named from its namespace's file.
 *
 * @module
 */

import { canonicalIp } from "./ip_address.ts";
import { presentName } from "./dns_message.ts";
import { readFileInRoot } from "./root_file.ts";

/**
 * The first name of each address in a hosts file's text (the first line
 * that has the address wins, as for a reverse lookup).
 *
 * @example
 * ```ts
 * import { parseHostsFile } from "./hosts_file.ts";
 * import assert from "node:assert/strict";
 * const hosts = parseHostsFile("127.0.0.1 localhost\n10.1.0.5  DB.internal db # main\n::1 ip6-localhost");
 * assert.equal(hosts.get("10.1.0.5"), "db.internal");
 * assert.equal(hosts.get("::1"), "ip6-localhost");
 * ```
 */
export function parseHostsFile(text: string): Map<string, string> {
  const names = new Map<string, string>();
  for (const line of text.split("\n")) {
    const [address, name] = line.replace(/#.*/, "").trim().split(/\s+/, 2);
    if (!name) continue;
    const canonical = canonicalIp(address);
    if (canonical !== undefined && !names.has(canonical)) names.set(canonical, presentName(name));
  }
  return names;
}

/** Options of {@link HostsFiles}. */
export interface HostsFilesOptions {
  /** Where processes are (default `/proc`: the host's, for `--host-root`). */
  proc?: string;
  /** The file, in each process's root (default `/etc/hosts`). */
  path?: string;
  /** How long a namespace's file is used before it is checked again (default 1000 ms). */
  recheckMs?: number;
  /** Bytes of a file read at most (default 4 MiB: blocklists make large ones). */
  maxBytes?: number;
  /** Distinct files and namespaces remembered at most (default 1024 each). */
  maxFiles?: number;
}

interface NamespaceEntry {
  identity: string;
  names: Map<string, string>;
  checkedAtMs: number;
}

/**
 * Hosts files of processes, cached.
 *
 * @example
 * ```ts
 * import { HostsFiles, parseHostsFile } from "./hosts_file.ts";
 * import assert from "node:assert/strict";
 * const hosts = new HostsFiles();
 * const mntns = Deno.statSync("/proc/self/ns/mnt").ino!;
 * // This process's own file, as it sees it.
 * const ours = parseHostsFile(Deno.readTextFileSync("/etc/hosts"));
 * assert.equal(hosts.nameOf(Deno.pid, mntns, "127.0.0.1"), ours.get("127.0.0.1"));
 * // The process is gone (pid 0): its namespace's file is remembered.
 * assert.equal(hosts.nameOf(0, mntns, "127.0.0.1"), ours.get("127.0.0.1"));
 * ```
 */
export class HostsFiles {
  readonly #proc: string;
  readonly #path: string;
  readonly #recheckMs: number;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  // Parsed files by identity, and each mount namespace's file.
  readonly #files = new Map<string, Map<string, string>>();
  readonly #namespaces = new Map<number, NamespaceEntry>();

  constructor(options: HostsFilesOptions = {}) {
    this.#proc = options.proc ?? "/proc";
    this.#path = options.path ?? "/etc/hosts";
    this.#recheckMs = options.recheckMs ?? 1000;
    this.#maxBytes = options.maxBytes ?? 4 << 20;
    this.#maxFiles = options.maxFiles ?? 1024;
  }

  /**
   * The hosts-file name of `address` for process `pid` of mount namespace
   * `mntns`. Read from the process's file when the namespace's was not
   * checked in the last second (or from the namespace's last known file
   * when the process is gone).
   */
  nameOf(pid: number, mntns: number, address: string): string | undefined {
    let entry = this.#namespaces.get(mntns);
    const now = performance.now();
    if (!entry || now - entry.checkedAtMs >= this.#recheckMs) entry = this.#check(pid, mntns, now);
    return entry.names.get(address);
  }

  /**
   * Reads the hosts file of process `pid` now and remembers it for its
   * mount namespace: its processes are then named from it even once they
   * have exited (egress run reads COMMAND's before COMMAND runs).
   */
  remember(pid: number): void {
    let mntns: number;
    try {
      mntns = Deno.statSync(`${this.#proc}/${pid}/ns/mnt`).ino ?? 0;
    } catch {
      return; // gone
    }
    if (mntns !== 0) this.#check(pid, mntns, performance.now());
  }

  /** Reads the namespace's file again (if changed), through `pid` or another of its processes. */
  #check(pid: number, mntns: number, now: number): NamespaceEntry {
    const known = this.#namespaces.get(mntns);
    let entry = pid > 0 ? this.#read(pid, known, now) : undefined;
    // A process that connected and exited before its event was read: its
    // namespace's other processes have the same file.
    if (!entry && mntns !== 0) {
      const other = this.#processIn(mntns, pid);
      if (other !== undefined) entry = this.#read(other, known, now);
    }
    // Missing or unreadable: what was known stays, checked again later.
    entry ??= {
      identity: known?.identity ?? "",
      names: known?.names ?? new Map(),
      checkedAtMs: now,
    };
    if (!this.#namespaces.has(mntns) && this.#namespaces.size >= this.#maxFiles) {
      this.#namespaces.delete(this.#namespaces.keys().next().value!);
    }
    this.#namespaces.set(mntns, entry);
    return entry;
  }

  /** A live process of mount namespace `mntns` other than `except`, from /proc. */
  #processIn(mntns: number, except: number): number | undefined {
    try {
      for (const entry of Deno.readDirSync(this.#proc)) {
        const pid = Number(entry.name);
        if (!Number.isInteger(pid) || pid === except) continue;
        try {
          if (Deno.statSync(`${this.#proc}/${pid}/ns/mnt`).ino === mntns) return pid;
        } catch {
          // gone meanwhile, or not ours to see
        }
      }
    } catch {
      // no /proc
    }
    return undefined;
  }

  #read(pid: number, known: NamespaceEntry | undefined, now: number): NamespaceEntry | undefined {
    const file = readFileInRoot(`${this.#proc}/${pid}/root`, this.#path, {
      maxBytes: this.#maxBytes,
      knownIdentity: known?.identity,
    });
    if (!file) return undefined;
    let names = file.bytes ? undefined : known?.names;
    names ??= this.#files.get(file.identity);
    if (!names) {
      names = parseHostsFile(new TextDecoder().decode(file.bytes));
      if (this.#files.size >= this.#maxFiles) this.#files.clear();
      this.#files.set(file.identity, names);
    }
    return { identity: file.identity, names, checkedAtMs: now };
  }
}
