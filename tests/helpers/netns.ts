/**
 * Network namespaces with a veth pair to the test's own namespace, so a
 * test can trace traffic that really crosses an interface.
 *
 * @module
 */

function run(args: string[]): void {
  const result = new Deno.Command(args[0], { args: args.slice(1), stderr: "piped" }).outputSync();
  if (!result.success) {
    throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
}

/** A network namespace linked to this one by a veth pair. */
export interface LinkedNetns {
  name: string;
  /** The veth on this side, and its peer in the namespace. */
  hostInterface: string;
  nsInterface: string;
  /** Address of this side (in the test's namespace). */
  hostAddress: string;
  /** Address inside the namespace. */
  nsAddress: string;
  hostAddress6: string;
  nsAddress6: string;
  [Symbol.asyncDispose](): Promise<void>;
}

let counter = 0;

/** Creates a namespace `tgtest-<pid>-<n>` with IPv4 and IPv6 on a veth pair. */
export function createLinkedNetns(): LinkedNetns {
  counter++;
  const name = `tgtest-${Deno.pid}-${counter}`;
  const hostIf = `tgh${Deno.pid % 10000}${counter}`;
  const nsIf = `tgn${Deno.pid % 10000}${counter}`;
  const subnet = 200 + (counter % 50);
  const hostAddress = `10.${subnet}.${Deno.pid % 250}.1`;
  const nsAddress = `10.${subnet}.${Deno.pid % 250}.2`;
  const hostAddress6 = `fd00:${subnet}:${(Deno.pid % 65000).toString(16)}::1`;
  const nsAddress6 = `fd00:${subnet}:${(Deno.pid % 65000).toString(16)}::2`;
  run(["ip", "netns", "add", name]);
  try {
    run(["ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf]);
    run(["ip", "link", "set", nsIf, "netns", name]);
    run(["ip", "addr", "add", `${hostAddress}/24`, "dev", hostIf]);
    run(["ip", "-6", "addr", "add", `${hostAddress6}/64`, "dev", hostIf, "nodad"]);
    run(["ip", "link", "set", hostIf, "up"]);
    const inNs = ["ip", "netns", "exec", name];
    run([...inNs, "ip", "addr", "add", `${nsAddress}/24`, "dev", nsIf]);
    run([...inNs, "ip", "-6", "addr", "add", `${nsAddress6}/64`, "dev", nsIf, "nodad"]);
    run([...inNs, "ip", "link", "set", nsIf, "up"]);
    run([...inNs, "ip", "link", "set", "lo", "up"]);
  } catch (error) {
    try {
      run(["ip", "netns", "del", name]);
    } catch {
      // best effort
    }
    throw error;
  }
  return {
    name,
    hostInterface: hostIf,
    nsInterface: nsIf,
    hostAddress,
    nsAddress,
    hostAddress6,
    nsAddress6,
    [Symbol.asyncDispose]() {
      // Deleting the namespace deletes its end of the veth pair, and so both.
      run(["ip", "netns", "del", name]);
      return Promise.resolve();
    },
  };
}

/** The inode number of a network namespace, as the tracer reports it. */
export function netnsInode(name: string): number {
  return Deno.statSync(`/run/netns/${name}`).ino ?? 0;
}
