/**
 * The embedded libbpf (bpf/libbpf/): the committed library needs only
 * glibc and exports the system libbpf.so.1's API, a rebuild here is
 * equivalent to it, tcpgadget loads it from a memfd (or a temporary file
 * it removes at once) and traces with the host's libbpf, libelf and zlib
 * hidden.
 */

import {
  check,
  GLIBC_SONAMES,
  LIBBPF_DIR,
  libbpfVersionString,
  LIBRARY,
  libraryFacts,
  libraryProblems,
  missingPrerequisites,
  readManifest,
  SYSTEM_LIBBPF,
} from "../bpf/libbpf/build.ts";
import { MEMFD_NAME, TEMP_PREFIX } from "../core/libbpf_embedded.ts";
import { inPrivateMounts } from "./helpers/cli.ts";
import { pathExists } from "../core/system.ts";
import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { hasCommand, needsBpf } from "./helpers/privileges.ts";

const FILE = "libbpf_bundle_test.ts";
const ROOT = new URL("..", import.meta.url).pathname;
const COMMITTED = `${LIBBPF_DIR}${LIBRARY}`;

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function skip(reason: string | undefined, what: string): boolean {
  if (reason) console.warn(`SKIPPED (${FILE} ${what}): ${reason}`);
  return reason !== undefined;
}

const notX86Linux = Deno.build.os === "linux" && Deno.build.arch === "x86_64"
  ? undefined
  : `the embedded libbpf is for x86_64 Linux, this is ${Deno.build.target}`;
const noReadelf = notX86Linux ??
  (hasCommand("readelf") ? undefined : "readelf not installed (apt-get install binutils)");
const noBpfOrUnshare = needsBpf(FILE)
  ? "needs root and BPF (see above)"
  : hasCommand("unshare")
  ? notX86Linux
  : "unshare not installed (util-linux)";

Deno.test({
  name: "libbpf bundle: the committed library needs only glibc and exports libbpf's API",
  ignore: skip(noReadelf, "committed library"),
  async fn() {
    const facts = await libraryFacts(COMMITTED);
    assertEquals(libraryProblems(facts), []);
    assert(facts.needed.every((name) => GLIBC_SONAMES.includes(name)), `${facts.needed}`);
    assert(facts.needed.includes("libc.so.6"));
    const manifest = await readManifest();
    assertEquals(libbpfVersionString(COMMITTED), manifest.libbpfVersionString);
    assertMatch(manifest.libbpf, /^\d+\.\d+\.\d+$/);
    assertEquals((await Deno.stat(COMMITTED)).size, manifest.size);
    // BUILD.md states the versions it was built with; keep it in step.
    const notes = await Deno.readTextFile(`${LIBBPF_DIR}BUILD.md`);
    for (const [name, version] of Object.entries(manifest.packages)) {
      const row = new RegExp(`^\\| ${escape(name)} +\\| ${escape(version)} +\\|$`, "m");
      assertMatch(notes, row, `BUILD.md lists ${name} ${version}: rerun the build and update it`);
    }
    try {
      await Deno.stat(SYSTEM_LIBBPF);
    } catch {
      console.warn(`NOTE (${FILE}): ${SYSTEM_LIBBPF} absent, exports not compared with it`);
      return;
    }
    assertEquals(facts.exports, (await libraryFacts(SYSTEM_LIBBPF)).exports);
  },
});

Deno.test({
  name: "libbpf bundle: rebuilding gives the same exports, versions and dependencies",
  ignore: skip(notX86Linux ?? missingPrerequisites(), "rebuild check"),
  async fn() {
    const { problems, notes } = await check();
    for (const note of notes) console.log(`  ${note}`);
    assertEquals(problems, []);
  },
});

/** A tcpgadget process whose stdout and stderr are collected as they come. */
class Run {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #done: Promise<void>;
  #readyWaiters: (() => void)[] = [];

  constructor(command: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(command[0], {
      args: command.slice(1),
      cwd: ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#done = Promise.all([
      this.#collect(this.child.stdout, (text) => this.stdout += text),
      this.#collect(this.child.stderr, (text) => {
        this.stderr += text;
        for (const wake of this.#readyWaiters.splice(0)) wake();
      }),
    ]).then(() => {});
  }

  async #collect(stream: ReadableStream<Uint8Array>, add: (text: string) => void) {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) add(text);
  }

  /** Waits for "tracing TCP connections" on stderr (attached). */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.child.status.then(() => exited = true);
    while (!this.stderr.includes("tcpgadget: tracing TCP connections")) {
      if (exited || Date.now() > deadline) {
        throw new Error(`tracer did not attach; stderr: ${this.stderr}`);
      }
      await new Promise<void>((resolve) => {
        this.#readyWaiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  /** Waits for the end; returns the exit code. */
  async finish(): Promise<number> {
    const status = await this.child.status;
    await this.#done;
    return status.code;
  }

  /** Ends it if still running (after a failed assertion). */
  async kill(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.finish();
  }
}

/** Runs to the end; returns exit code, stdout, stderr. */
async function runToEnd(command: string[], env: Record<string, string> = {}) {
  const run = new Run(command, env);
  const code = await run.finish();
  return { code, stdout: run.stdout, stderr: run.stderr };
}

const deno = (...args: string[]) => [Deno.execPath(), "run", "-A", "mod.ts", ...args];

/** The system's libbpf, libelf and zlib files (resolved), as the loader would find them. */
function hostLibraryFiles(): string[] {
  const candidates: string[] = [];
  let cache = "";
  for (const ldconfig of ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]) {
    try {
      const listed = new Deno.Command(ldconfig, { args: ["-p"], stdout: "piped", stderr: "null" })
        .outputSync();
      cache = new TextDecoder().decode(listed.stdout);
      break;
    } catch {
      // not on PATH; the directories below are scanned anyway
    }
  }
  for (const line of cache.split("\n")) {
    const match = line.match(/^\s*(?:libbpf|libelf|libz)\b\S*\.so\S* .*=> (\S+)$/);
    if (match) candidates.push(match[1]);
  }
  for (const dir of ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64"]) {
    try {
      for (const entry of Deno.readDirSync(dir)) {
        if (/^(libbpf\.so|libelf[-.].*so|libz\.so)/.test(entry.name)) {
          candidates.push(`${dir}/${entry.name}`);
        }
      }
    } catch {
      // no such directory
    }
  }
  const files = new Set<string>();
  for (const path of candidates) {
    try {
      files.add(Deno.realPathSync(path));
    } catch {
      // dangling link
    }
  }
  return [...files].sort();
}

/**
 * A command prefix that runs the rest in a private mount namespace where
 * /dev/null is mounted over each of `files`, after checking it took.
 */
function withHidden(files: string[]): string[] {
  const quoted = files.map((f) => `'${f}'`).join(" ");
  const setup = `for f in ${quoted}; do mount --bind /dev/null "$f" || exit 97; ` +
    `test -s "$f" && exit 98; done`;
  return inPrivateMounts(setup, { orExit: false });
}

Deno.test({
  name: "libbpf bundle: traces with the host's libbpf, libelf and zlib hidden, exact connect event",
  ignore: skip(noBpfOrUnshare, "hidden host libraries"),
  async fn() {
    const hidden = hostLibraryFiles();
    assert(hidden.some((f) => f.includes("libbpf.so")), `host libbpf found: ${hidden}`);
    const hide = withHidden(hidden);

    // Control: in that namespace the host's libbpf really cannot be loaded.
    const control = await runToEnd([...hide, ...deno("version")], {
      TCPGADGET_LIBBPF: "libbpf.so.1",
    });
    assertEquals(control.code, 0, control.stderr);
    assertMatch(control.stdout, /^libbpf unavailable: cannot load libbpf from libbpf\.so\.1/m);
    const version = await runToEnd([...hide, ...deno("version")]);
    assertMatch(version.stdout, /^libbpf \d+\.\d+ \(embedded libbpf \d+\.\d+\.\d+ \(memfd\)\)$/m);

    const server = await Actor.start("tg-bundle-srv");
    const client = await Actor.start("tg-bundle-cli");
    const tracer = new Run([...hide, ...deno("trace", "tcp", "-o", "json", "--timeout", "3")]);
    try {
      const listener = await server.do("listen 127.0.0.1");
      await tracer.ready();
      const maps = await Deno.readTextFile(`/proc/${tracer.child.pid}/maps`);
      assert(maps.includes(`/memfd:${MEMFD_NAME}`), "libbpf mapped from the memfd");
      for (const file of hidden) assert(!maps.includes(file), `${file} not mapped`);

      const connected = await client.do(`connect 127.0.0.1 ${listener.port}`);
      const accepted = await server.do(`accept ${listener.sock}`);
      assertEquals(await tracer.finish(), 0, tracer.stderr);
      await client.do(`close ${connected.sock}`);
      await server.do(`close ${accepted.sock}`);

      const events = tracer.stdout.trim().split("\n").filter(Boolean)
        .map((line) => JSON.parse(line))
        .filter((e) => e.sport === listener.port || e.dport === listener.port)
        .filter((e) => e.operation === "connect" || e.operation === "accept")
        .map((e) => ({
          operation: e.operation,
          pid: e.pid,
          comm: e.comm,
          ipversion: e.ipversion,
          saddr: e.saddr,
          sport: e.sport,
          daddr: e.daddr,
          dport: e.dport,
        }));
      assertEquals(events.sort((a, b) => a.operation.localeCompare(b.operation)), [
        {
          operation: "accept",
          pid: server.pid,
          comm: "tg-bundle-srv",
          ipversion: 4,
          saddr: "127.0.0.1",
          sport: listener.port,
          daddr: "127.0.0.1",
          dport: connected.sport,
        },
        {
          operation: "connect",
          pid: client.pid,
          comm: "tg-bundle-cli",
          ipversion: 4,
          saddr: "127.0.0.1",
          sport: connected.sport,
          daddr: "127.0.0.1",
          dport: listener.port,
        },
      ]);
    } finally {
      await tracer.kill();
      await server.stop();
      await client.stop();
    }
  },
});

/** Names in `dir` that the temporary-file fallback would create. */
function stagedIn(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(TEMP_PREFIX))
      .sort();
  } catch {
    return [];
  }
}

function tempDirs(): string[] {
  return [...new Set(["/tmp", "/var/tmp", "/dev/shm", Deno.env.get("TMPDIR") ?? "/tmp"])];
}

/** Fails if a staged copy appeared in a system temporary directory since `before`. */
function assertNoNewStaged(before: Map<string, string[]>): void {
  for (const [dir, names] of before) {
    const added = stagedIn(dir).filter((n) => !names.includes(n));
    assertEquals(added, [], `left behind in ${dir}`);
  }
}

function snapshotStaged(): Map<string, string[]> {
  return new Map(tempDirs().map((dir) => [dir, stagedIn(dir)]));
}

Deno.test({
  name: "libbpf bundle: 'version' names the embedded library; the fallback leaves no file",
  ignore: skip(notX86Linux, "loading"),
  async fn() {
    const before = snapshotStaged();
    const memfd = await runToEnd(deno("version"));
    assertEquals(memfd.code, 0, memfd.stderr);
    assertMatch(memfd.stdout, /^libbpf \d+\.\d+ \(embedded libbpf \d+\.\d+\.\d+ \(memfd\)\)$/m);

    const tmpdir = await Deno.makeTempDir({ prefix: "tcpgadget-bundle-test-" });
    try {
      const fallback = await runToEnd(deno("version"), {
        TCPGADGET_NO_MEMFD: "1",
        TMPDIR: tmpdir,
      });
      assertEquals(fallback.code, 0, fallback.stderr);
      assertMatch(
        fallback.stdout,
        /^libbpf \d+\.\d+ \(embedded libbpf \d+\.\d+\.\d+ \(temporary file; memfd disabled by TCPGADGET_NO_MEMFD\)\)$/m,
      );
      assertEquals([...Deno.readDirSync(tmpdir)], [], "the private copy is removed");
    } finally {
      await Deno.remove(tmpdir, { recursive: true });
    }
    assertNoNewStaged(before);
  },
});

Deno.test({
  name: "libbpf bundle: a running tracer maps libbpf from a closed memfd, or a removed file",
  ignore: skip(noBpfOrUnshare, "running tracer"),
  async fn() {
    const before = snapshotStaged();

    // memfd: mapped, its descriptor closed after dlopen, no system libbpf.
    const memfd = new Run(deno("trace", "tcp", "-o", "json", "--timeout", "2"));
    try {
      await memfd.ready();
      const pid = memfd.child.pid;
      const maps = await Deno.readTextFile(`/proc/${pid}/maps`);
      assert(maps.includes(`/memfd:${MEMFD_NAME} (deleted)`), "mapped from the memfd");
      assert(!/\/libbpf\.so|\/libelf|\/libz\.so/.test(maps), "no host libbpf, libelf or zlib");
      const links = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => {
        try {
          return Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`);
        } catch {
          return "";
        }
      });
      assertEquals(links.filter((l) => l.includes("memfd:")), [], "memfd closed after dlopen");
      assertEquals(await memfd.finish(), 0, memfd.stderr);
    } finally {
      await memfd.kill();
    }

    // Temporary file: mapped, yet already removed while the tracer runs.
    const tmpdir = await Deno.makeTempDir({ prefix: "tcpgadget-bundle-test-" });
    const env = { TCPGADGET_NO_MEMFD: "1", TMPDIR: tmpdir };
    try {
      const file = new Run(deno("trace", "tcp", "-o", "json", "--timeout", "2"), env);
      try {
        await file.ready();
        const maps = await Deno.readTextFile(`/proc/${file.child.pid}/maps`);
        const staged = `${escape(tmpdir)}/${TEMP_PREFIX}\\w+/libbpf\\.so\\.1 \\(deleted\\)`;
        assertMatch(maps, new RegExp(staged));
        assertEquals([...Deno.readDirSync(tmpdir)], [], "removed right after dlopen");
        assertEquals(await file.finish(), 0, file.stderr);
        assertEquals([...Deno.readDirSync(tmpdir)], []);
      } finally {
        await file.kill();
      }
    } finally {
      await Deno.remove(tmpdir, { recursive: true });
    }

    // A noexec TMPDIR (dlopen would fail there) is passed over for the next one, /tmp.
    const passedOver = await inPrivateTmp(
      ["unshare", "--mount", "--propagation", "private"],
      "mkdir /tmp/noexec && mount -t tmpfs -o noexec none /tmp/noexec",
      deno("version"),
      { TCPGADGET_NO_MEMFD: "1", TMPDIR: "/tmp/noexec" },
    );
    assertEquals(passedOver.code, 0, passedOver.stderr);
    assertMatch(passedOver.stdout, /^libbpf \d+\.\d+ \(embedded libbpf .* \(temporary file;/m);
    assertEquals(passedOver.left, [], "nothing left in the private /tmp");
    assertNoNewStaged(before);
  },
});

const ROOT_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/**
 * Shell commands that mount a fresh tmpfs on /tmp, keeping `dir` (this
 * checkout, which may itself be under /tmp) visible at its path.
 */
function privateTmpKeeping(dir: string): string {
  if (!dir.startsWith("/tmp/")) return "mount -t tmpfs none /tmp";
  const keep = `/run/tcpgadget-test-checkout-${Deno.pid}`;
  return `mkdir -p ${keep} && mount --bind '${dir}' ${keep} && mount -t tmpfs none /tmp && ` +
    `mkdir -p '${dir}' && mount --bind ${keep} '${dir}' && umount ${keep} && rmdir ${keep}`;
}

/**
 * Runs `command` under `namespace` (an unshare prefix with a new mount
 * namespace) with a fresh tmpfs on /tmp, so the host's /tmp is not touched,
 * after `setup`; `left` lists the staged copies that remained in that /tmp.
 */
async function inPrivateTmp(
  namespace: string[],
  setup: string,
  command: string[],
  env: Record<string, string>,
) {
  const script = `${privateTmpKeeping(ROOT_DIR)} && ${setup} || exit 97; "$@"; code=$?; ` +
    `echo "left in /tmp: [$(find /tmp -name '${TEMP_PREFIX}*' | tr '\\n' ' ')]" >&2; exit $code`;
  const result = await runToEnd([...namespace, "sh", "-c", script, "sh", ...command], env);
  const left = result.stderr.match(/^left in \/tmp: \[(.*)\]$/m);
  assert(left, `the script ran to its end: ${result.stderr}`);
  return { ...result, left: left[1].split(" ").filter(Boolean) };
}

const noMemfdNoexec = noBpfOrUnshare ??
  (pathExists("/proc/sys/vm/memfd_noexec") ? undefined : "kernel has no vm.memfd_noexec (< 6.3)");

Deno.test({
  name: "libbpf bundle: with vm.memfd_noexec, an executable memfd or else a temporary file",
  ignore: skip(noMemfdNoexec, "memfd_noexec"),
  async fn() {
    // The sysctl is per PID namespace: set it in a new one, never on the host.
    const withNoexec = (level: number) =>
      inPrivateTmp(
        ["unshare", "--pid", "--fork", "--mount-proc"],
        `echo ${level} > /proc/sys/vm/memfd_noexec`,
        deno("version"),
        { TMPDIR: "/tmp" },
      );
    // 1: memfds are non-executable unless asked for with MFD_EXEC, which tcpgadget does.
    const exec = await withNoexec(1);
    assertEquals(exec.code, 0, exec.stderr);
    assertMatch(exec.stdout, /^libbpf \d+\.\d+ \(embedded libbpf \d+\.\d+\.\d+ \(memfd\)\)$/m);
    // 2: no executable memfd at all.
    const refused = await withNoexec(2);
    assertEquals(refused.code, 0, refused.stderr);
    assertMatch(
      refused.stdout,
      /^libbpf \d+\.\d+ \(embedded libbpf \d+\.\d+\.\d+ \(temporary file; memfd memfd_create: Permission denied\)\)$/m,
    );
    assertEquals(refused.left, [], "nothing left in the private /tmp");
  },
});
