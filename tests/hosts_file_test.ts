/**
 * Names from processes' hosts files (core/hosts_file.ts, core/root_file.ts):
 * a real process with its own /etc/hosts in a private mount namespace, the
 * cache by file identity and by mount namespace, and a hostile file system
 * (a symlink out of the root, a FIFO, a huge file) that is never followed,
 * blocked on or read beyond the bound.
 */

import { HostsFiles, parseHostsFile } from "../core/hosts_file.ts";
import { readFileInRoot } from "../core/root_file.ts";
import { Actor } from "./helpers/actors.ts";
import { assertEquals } from "./helpers/assert.ts";
import { BPF_SKIP_REASON } from "./helpers/privileges.ts";

// Mount namespaces need root (not BPF): the same reason stands.
const noRoot = BPF_SKIP_REASON?.startsWith("not root") || Deno.build.os !== "linux";
if (noRoot) console.warn("SKIPPED (hosts_file_test.ts, mount namespaces): not root");

Deno.test("hosts file: the first line of an address wins, with its first name", () => {
  const names = parseHostsFile([
    "# comment",
    "127.0.0.1\tlocalhost",
    "10.0.0.5 Primary.Test alias # trailing comment",
    "10.0.0.5 second.test",
    "fd00:0::5 six.test",
    "not-an-address name.test",
    "10.0.0.6",
    "",
  ].join("\n"));
  assertEquals(Object.fromEntries(names), {
    "127.0.0.1": "localhost",
    "10.0.0.5": "primary.test",
    "fd00::5": "six.test",
  });
});

Deno.test({
  name: "hosts file: a process's own file, remembered for its namespace after it exits",
  ignore: noRoot,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-hosts-" });
    const hostsPath = `${dir}/hosts`;
    await Deno.writeTextFile(hostsPath, "10.20.30.40 mine.test\n");
    const actor = await Actor.start("tg-hosts", { binds: { "/etc/hosts": hostsPath } });
    try {
      const mntns = Deno.statSync(`/proc/${actor.pid}/ns/mnt`).ino!;
      const hosts = new HostsFiles({ recheckMs: 0 });
      assertEquals(hosts.nameOf(actor.pid, mntns, "10.20.30.40"), "mine.test");
      // Not this process's file: its own namespace has none of it.
      const ours = Deno.statSync("/proc/self/ns/mnt").ino!;
      assertEquals(hosts.nameOf(Deno.pid, ours, "10.20.30.40"), undefined);
      // A changed file is read again.
      await Deno.writeTextFile(hostsPath, "10.20.30.40 changed.test\n");
      assertEquals(hosts.nameOf(actor.pid, mntns, "10.20.30.40"), "changed.test");
      await actor.stop();
      assertEquals(hosts.nameOf(actor.pid, mntns, "10.20.30.40"), "changed.test");
    } finally {
      await actor.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "root file: a symlink cannot lead out of the root, a FIFO is not waited on, size is bounded",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-root-" });
    try {
      const root = `${dir}/root`;
      await Deno.mkdir(`${root}/etc`, { recursive: true });
      await Deno.mkdir(`${root}/data`);
      await Deno.writeTextFile(`${dir}/outside`, "10.6.6.6 outside.test\n");
      const read = (path: string, maxBytes = 1 << 20) => {
        const file = readFileInRoot(root, path, { maxBytes });
        return file?.bytes ? new TextDecoder().decode(file.bytes) : file;
      };
      // An absolute link is resolved inside the root (where it is missing).
      await Deno.symlink(`${dir}/outside`, `${root}/etc/hosts`);
      assertEquals(read("/etc/hosts"), undefined);
      // ".." stops at the root too.
      await Deno.remove(`${root}/etc/hosts`);
      await Deno.symlink("../../../outside", `${root}/etc/hosts`);
      assertEquals(read("/etc/hosts"), undefined);
      // A link that stays inside is followed.
      await Deno.remove(`${root}/etc/hosts`);
      await Deno.writeTextFile(`${root}/data/hosts`, "10.1.1.1 inside.test\n");
      await Deno.symlink("../data/hosts", `${root}/etc/hosts`);
      assertEquals(read("/etc/hosts"), "10.1.1.1 inside.test\n");
      // A FIFO nobody writes to: not a regular file, not waited on.
      await Deno.remove(`${root}/etc/hosts`);
      const mkfifo = new Deno.Command("mkfifo", { args: [`${root}/etc/hosts`] }).outputSync();
      assertEquals(mkfifo.success, true);
      assertEquals(read("/etc/hosts"), undefined);
      // A directory, and nothing.
      assertEquals(read("/etc"), undefined);
      assertEquals(read("/missing"), undefined);
      // A large file: its first bytes only.
      await Deno.writeTextFile(`${root}/data/hosts`, "x".repeat(100_000));
      assertEquals((read("/data/hosts", 1000) as string).length, 1000);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
