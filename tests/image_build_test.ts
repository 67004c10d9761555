/**
 * `tcpgadget image build`, run as a user runs it (`deno run`), and its
 * archive checked by other programs: skopeo reads the OCI layout, GNU tar
 * lists and unpacks the layer, the layer alone runs tcpgadget in a chroot
 * (`version`, and a real trace of a loopback connection with the host
 * mounted at /host as in an agent pod), Debian's docker-registry takes the
 * push and gives back the digest the build printed, and a second build
 * writes the same bytes. Bad input and a stop (SIGINT, SIGTERM) leave
 * nothing behind. A compiled tcpgadget cannot be built here (no denort),
 * so the image of a compiled program is checked with another binary in
 * its place.
 */

import { createHash } from "node:crypto";
import fs from "node:fs";
import zlib from "node:zlib";
import { Actor } from "./helpers/actors.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun, inPrivateMounts, tcpgadgetCommand } from "./helpers/cli.ts";
import { hasCommand, needsBpf } from "./helpers/privileges.ts";
import { makeBundleDir } from "../k8s/api/bundle_dir.ts";
import { LAUNCHER, writeAgentImage } from "../k8s/image/agent_image.ts";
import { parseImageReference } from "../k8s/image/image_reference.ts";
import { OciArchiveFile } from "../k8s/image/oci_archive.ts";
import { IMAGE_BUILD_HELP } from "../cli/flags.ts";
import { VERSION } from "../cli/version.ts";
import { Registry, registrySkipReason } from "./helpers/registry.ts";

const FILE = "image_build_test.ts";
const ROOT = new URL("..", import.meta.url).pathname;

function skipReason(): { skopeo?: string; registry?: string; chroot?: string } {
  return {
    skopeo: hasCommand("skopeo") ? undefined : "skopeo not installed (apt-get install skopeo)",
    registry: hasCommand("/usr/bin/docker-registry", "--version")
      ? undefined
      : "docker-registry not installed (apt-get install docker-registry)",
    chroot: Deno.uid() !== 0
      ? "not root (chroot and mounts)"
      : !hasCommand("unshare")
      ? "unshare (util-linux) not installed"
      : undefined,
  };
}
const SKIP = skipReason();
for (const [what, why] of Object.entries(SKIP)) {
  if (why) console.warn(`SKIPPED (${FILE}, ${what} checks): ${why}`);
}

const decoder = new TextDecoder();

/** Runs a program; fails the test with its stderr unless it succeeds. Returns stdout. */
async function run(command: string, args: string[], options: Deno.CommandOptions = {}) {
  const output = await new Deno.Command(command, { args, stdin: "null", ...options }).output();
  assert(
    output.success,
    `${command} ${args.join(" ")} failed (${output.code}): ${decoder.decode(output.stderr)}`,
  );
  return output.stdout;
}

/** {@link run} of a command line given as one list. */
function runWords(words: string[]) {
  return run(words[0], words.slice(1));
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(path)) hash.update(chunk as Uint8Array);
  return `sha256:${hash.digest("hex")}`;
}

/** SHA-256 of the gunzipped content of `path` (a layer's diff_id). */
async function gunzippedSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  const gunzip = fs.createReadStream(path).pipe(zlib.createGunzip());
  for await (const chunk of gunzip) hash.update(chunk as Uint8Array);
  return `sha256:${hash.digest("hex")}`;
}

interface Build {
  code: number;
  stderr: string;
  ms: number;
  /** What the build printed: the manifest digest. */
  digest?: string;
}

/** `tcpgadget image build ARGS` in `cwd`. */
async function build(args: string[], cwd: string): Promise<Build> {
  const [command, ...rest] = tcpgadgetCommand();
  const started = performance.now();
  const output = await new Deno.Command(command, {
    args: [...rest, "image", "build", ...args],
    cwd,
    stdin: "null",
  }).output();
  const stderr = decoder.decode(output.stderr);
  return {
    code: output.code,
    stderr,
    ms: performance.now() - started,
    digest: stderr.match(/manifest (sha256:[0-9a-f]{64})/)?.[1],
  };
}

/** The PID of the process running `agent idle SECONDS`, if any. */
function idleProcess(seconds: string): number | undefined {
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      if (argv[0] === "/opt/tcpgadget/deno" && argv.at(-2) === seconds) return Number(entry.name);
    } catch {
      // ended
    }
  }
  return undefined;
}

/** The Env of a config as an object. */
function envOf(config: { config: { Env: string[] } }): Record<string, string> {
  return Object.fromEntries(config.config.Env.map((line) => {
    const at = line.indexOf("=");
    return [line.slice(0, at), line.slice(at + 1)];
  }));
}

/** Wrapper words that run a command in `root` with only `env`, /proc mounted there (and `setup`). */
function inChroot(root: string, env: Record<string, string>, setup = "true"): string[] {
  return [
    ...inPrivateMounts(`${setup} && mount -t proc proc ${root}/proc`),
    "env",
    "-i",
    ...Object.entries(env).map(([name, value]) => `${name}=${value}`),
    "/usr/sbin/chroot",
    root,
  ];
}

// The libraries this machine's Deno and the embedded libbpf need (Debian 12, x86-64).
const LIBRARIES = [
  "ld-linux-x86-64.so.2",
  "libc.so.6",
  "libdl.so.2",
  "libgcc_s.so.1",
  "libm.so.6",
  "libpthread.so.0",
  "librt.so.1",
];

/** The layer GNU tar lists for an image made under `deno run` on this machine. */
async function expectedListing(sizes: { bundle: number; idle: number }): Promise<string[]> {
  const file = async (name: string, source: string) =>
    `-rwxr-xr-x 0/0 ${(await Deno.stat(source)).size} 1970-01-01 00:00:00 ${name}`;
  const dir = (name: string, mode = "drwxr-xr-x") => `${mode} 0/0 0 1970-01-01 00:00:00 ${name}`;
  return [
    dir("lib/"),
    dir("lib/x86_64-linux-gnu/"),
    ...await Promise.all(
      LIBRARIES.map((lib) => file(`lib/x86_64-linux-gnu/${lib}`, `/lib/x86_64-linux-gnu/${lib}`)),
    ),
    dir("lib64/"),
    await file("lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
    dir("opt/"),
    dir("opt/tcpgadget/"),
    `-rw-r--r-- 0/0 ${sizes.idle} 1970-01-01 00:00:00 opt/tcpgadget/agent_idle.js`,
    await file("opt/tcpgadget/deno", Deno.execPath()),
    `-rw-r--r-- 0/0 ${sizes.bundle} 1970-01-01 00:00:00 opt/tcpgadget/tcpgadget.js`,
    dir("tmp/", "drwxrwxrwt"),
    dir("usr/"),
    dir("usr/local/"),
    dir("usr/local/bin/"),
    `-rwxr-xr-x 0/0 ${
      new TextEncoder().encode(LAUNCHER).length
    } 1970-01-01 00:00:00 usr/local/bin/tcpgadget`,
  ];
}

/** `tar -tv` of a gzip layer, one line per entry, sizes and times numeric. */
async function listLayer(path: string): Promise<string[]> {
  const out = await run("tar", ["--numeric-owner", "--full-time", "-tvzf", path], {
    env: { TZ: "UTC", LC_ALL: "C" },
  });
  return decoder.decode(out).trim().split("\n").map((line) => line.replace(/\s+/g, " "));
}

/** The bundle as `deno bundle --minify` makes it from `entry` (what the image must hold). */
async function freshBundle(dir: string, entry = "mod.ts"): Promise<Uint8Array> {
  await run(Deno.execPath(), [
    "bundle",
    "--quiet",
    "--minify",
    "--platform",
    "deno",
    "--output",
    `${dir}/bundle.js`,
    `${ROOT}${entry}`,
  ], { cwd: ROOT, env: { NO_COLOR: "1" } });
  return await Deno.readFile(`${dir}/bundle.js`);
}

Deno.test("image build: the archive, the layer alone in a chroot, a registry, the same bytes twice", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-image-test-" });
  try {
    const first = await build(["--output", "image.tar"], dir);
    const archive = `${dir}/image.tar`;
    const { size } = await Deno.stat(archive);
    assertEquals(first.code, 0, first.stderr);
    assert(first.digest, first.stderr);
    const lines = first.stderr.trimEnd().split("\n");
    assertEquals(lines.length, 2, first.stderr);
    assertMatch(
      lines[0],
      new RegExp(
        `^tcpgadget: wrote image\\.tar \\(${
          (size / 1e6).toFixed(1).replace(".", "\\.")
        } MB\\) in \\d+\\.\\d s: image tcpgadget:${VERSION.replaceAll(".", "\\.")} ` +
          `\\(Deno and a bundle\\), manifest ${first.digest}$`,
      ),
    );
    assertEquals(
      lines[1],
      `tcpgadget: push it with: skopeo copy oci-archive:image.tar docker://REGISTRY/tcpgadget:${VERSION}`,
    );
    // Nothing else next to it: no temporary file left.
    assertEquals([...Deno.readDirSync(dir)].map((entry) => entry.name), ["image.tar"]);

    // The archive's files, unpacked by GNU tar.
    const unpacked = `${dir}/unpacked`;
    await Deno.mkdir(unpacked);
    await run("tar", ["-xf", archive, "-C", unpacked]);
    const index = JSON.parse(await Deno.readTextFile(`${unpacked}/index.json`));
    const manifestPath = `${unpacked}/blobs/${first.digest.replace(":", "/")}`;
    const manifest = JSON.parse(await Deno.readTextFile(manifestPath));
    const layerDigest: string = manifest.layers[0].digest;
    const layerPath = `${unpacked}/blobs/${layerDigest.replace(":", "/")}`;
    const diffId = await gunzippedSha256(layerPath);
    const expectedConfig = {
      created: "1970-01-01T00:00:00Z",
      architecture: "amd64",
      os: "linux",
      config: {
        Env: [
          "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "DENO_DIR=/tmp/deno",
          "DENO_NO_UPDATE_CHECK=1",
          "DENO_V8_FLAGS=--max-semi-space-size=4",
        ],
        Entrypoint: ["/usr/local/bin/tcpgadget"],
        WorkingDir: "/",
        Labels: {
          "org.opencontainers.image.title": "tcpgadget",
          "org.opencontainers.image.version": VERSION,
        },
      },
      rootfs: { type: "layers", diff_ids: [diffId] },
      history: [{
        created: "1970-01-01T00:00:00Z",
        created_by: "tcpgadget image build",
        comment: `tcpgadget ${VERSION} (Deno and a bundle), its loader and libraries`,
      }],
    };

    await t.step(
      "the layout: index, Docker's manifest.json, blobs named by their digest",
      async () => {
        assertEquals(
          decoder.decode(await run("tar", ["-tf", archive])).trim().split("\n"),
          [
            "blobs/",
            "blobs/sha256/",
            ...[manifest.config.digest, layerDigest, first.digest].map((d: string) =>
              `blobs/${d.replace(":", "/")}`
            ).sort(),
            "index.json",
            "manifest.json",
            "oci-layout",
          ],
        );
        assertEquals(JSON.parse(await Deno.readTextFile(`${unpacked}/oci-layout`)), {
          imageLayoutVersion: "1.0.0",
        });
        assertEquals(index, {
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.index.v1+json",
          manifests: [{
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest: first.digest,
            size: (await Deno.stat(manifestPath)).size,
            annotations: {
              "io.containerd.image.name": `docker.io/library/tcpgadget:${VERSION}`,
              "org.opencontainers.image.ref.name": VERSION,
            },
          }],
        });
        assertEquals(JSON.parse(await Deno.readTextFile(`${unpacked}/manifest.json`)), [{
          Config: `blobs/${manifest.config.digest.replace(":", "/")}`,
          RepoTags: [`tcpgadget:${VERSION}`],
          Layers: [`blobs/${layerDigest.replace(":", "/")}`],
        }]);
        for (const entry of Deno.readDirSync(`${unpacked}/blobs/sha256`)) {
          const path = `${unpacked}/blobs/sha256/${entry.name}`;
          assertEquals(await sha256File(path), `sha256:${entry.name}`);
        }
        assertEquals(
          manifest.config.size,
          (await Deno.stat(`${unpacked}/blobs/${manifest.config.digest.replace(":", "/")}`)).size,
        );
        assertEquals(manifest.layers[0].size, (await Deno.stat(layerPath)).size);
        // The gzip header carries no time (bytes 4-7) and says Unix (byte 9).
        const head = new Uint8Array(10);
        using layerFile = await Deno.open(layerPath);
        await layerFile.read(head);
        assertEquals([...head], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
      },
    );

    await t.step({
      name: "skopeo reads it: manifest, config, layer digests",
      ignore: SKIP.skopeo !== undefined,
      fn: async () => {
        const raw = await run("skopeo", ["inspect", "--raw", `oci-archive:${archive}`]);
        assertEquals(`sha256:${createHash("sha256").update(raw).digest("hex")}`, first.digest);
        assertEquals(JSON.parse(decoder.decode(raw)), {
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: {
            mediaType: "application/vnd.oci.image.config.v1+json",
            digest: manifest.config.digest,
            size: manifest.config.size,
          },
          layers: [{
            mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
            digest: await sha256File(layerPath),
            size: (await Deno.stat(layerPath)).size,
          }],
        });
        const config = await run("skopeo", ["inspect", "--config", `oci-archive:${archive}`]);
        assertEquals(JSON.parse(decoder.decode(config)), expectedConfig);
      },
    });

    await t.step({
      name:
        "Docker's side of it (manifest.json, what docker load reads): skopeo reads the same image",
      ignore: SKIP.skopeo !== undefined,
      fn: async () => {
        const source = `docker-archive:${archive}`;
        const config = await run("skopeo", ["inspect", "--config", source]);
        assertEquals(JSON.parse(decoder.decode(config)), expectedConfig);
        // Copied out of the Docker side into an OCI layout (skopeo packs the layer again): the
        // same files, byte for byte (the digest of the unpacked layer is the config's diff_id).
        const layout = `${dir}/from-docker`;
        await run("skopeo", ["copy", "--quiet", source, `oci:${layout}:x`]);
        const blob = (digest: string) => `${layout}/blobs/sha256/${digest.slice("sha256:".length)}`;
        const index = JSON.parse(await Deno.readTextFile(`${layout}/index.json`));
        const copied = JSON.parse(await Deno.readTextFile(blob(index.manifests[0].digest)));
        assertEquals(copied.layers.length, 1);
        const unpacked = createHash("sha256");
        const file = await Deno.open(blob(copied.layers[0].digest));
        for await (
          const chunk of file.readable.pipeThrough(new DecompressionStream("gzip"))
        ) unpacked.update(chunk);
        assertEquals(`sha256:${unpacked.digest("hex")}`, expectedConfig.rootfs.diff_ids[0]);
        await Deno.remove(layout, { recursive: true });
      },
    });

    const root = `${dir}/root`;
    const idleBundle = await freshBundle(dir, "cli/agent_idle.ts");
    const bundle = await freshBundle(dir);

    await t.step(
      "the layer: the program, Deno, the loader and libraries, /tmp; owned by root, dated 1970",
      async () => {
        const listing = await listLayer(layerPath);
        assertEquals(
          listing,
          await expectedListing({ bundle: bundle.length, idle: idleBundle.length }),
        );
        // The same libraries ldd finds for Deno (with the loader's own name, which libc and
        // libbpf need by name).
        const ldd = decoder.decode(await run("ldd", [Deno.execPath()]));
        const names = [...ldd.matchAll(/^\s*(\S+) => (\S+)/gm)].map((m) => m[2].split("/").at(-1)!);
        assertEquals([...new Set([...names, "ld-linux-x86-64.so.2"])].sort(), LIBRARIES);
        const unpackedSize = listing.reduce((sum, line) => sum + Number(line.split(" ")[2]), 0);
        console.log(
          `image: built in ${(first.ms / 1000).toFixed(1)} s; archive ${
            (size / 1e6).toFixed(1)
          } MB, ` +
            `layer ${(manifest.layers[0].size / 1e6).toFixed(1)} MB (${
              (unpackedSize / 1e6).toFixed(1)
            } MB unpacked):\n  ${listing.join("\n  ")}`,
        );

        await Deno.mkdir(root);
        await run("tar", ["--numeric-owner", "-pxzf", layerPath, "-C", root]);
        assertEquals(await Deno.readTextFile(`${root}/usr/local/bin/tcpgadget`), LAUNCHER);
        assertEquals(LAUNCHER.split("\n")[0], "#!/opt/tcpgadget/deno -A");
        assertEquals(await Deno.readFile(`${root}/opt/tcpgadget/tcpgadget.js`), bundle);
        assertEquals(await Deno.readFile(`${root}/opt/tcpgadget/agent_idle.js`), idleBundle);
        assertEquals(
          await sha256File(`${root}/opt/tcpgadget/deno`),
          await sha256File(Deno.execPath()),
        );
        for (const name of LIBRARIES) {
          assertEquals(
            await sha256File(`${root}/lib/x86_64-linux-gnu/${name}`),
            await sha256File(Deno.realPathSync(`/lib/x86_64-linux-gnu/${name}`)),
          );
        }
        assertEquals((await Deno.stat(`${root}/tmp`)).mode! & 0o7777, 0o1777);
      },
    );

    await t.step({
      name: "the layer alone runs `tcpgadget version` in a chroot, with the config's Env",
      ignore: SKIP.chroot !== undefined,
      fn: async () => {
        await Deno.mkdir(`${root}/proc`);
        const inside = await runWords([
          ...inChroot(root, envOf(expectedConfig)),
          "/usr/local/bin/tcpgadget",
          "version",
        ]);
        const outside = await CliRun.run(["version"]);
        assertEquals(outside.code, 0);
        assertEquals(decoder.decode(inside), outside.stdout);
        assertEquals(decoder.decode(inside).split("\n")[0], `tcpgadget ${VERSION}`);
        // Deno's cache went to DENO_DIR in the image's /tmp.
        assert((await Deno.stat(`${root}/tmp/deno`)).isDirectory);
      },
    });

    await t.step({
      name:
        "in the chroot, `agent idle` (the pod's idle process) loads its own bundle and ends on SIGTERM",
      ignore: SKIP.chroot !== undefined,
      fn: async () => {
        // Seconds unique to this test, to find the process among the wrapper's.
        const seconds = String(7000 + Math.floor(Math.random() * 999));
        const [command, ...args] = [
          ...inChroot(root, envOf(expectedConfig)),
          "/usr/local/bin/tcpgadget",
          "agent",
          "idle",
          seconds,
        ];
        const child = new Deno.Command(command, { args, stdin: "null", stderr: "piped" }).spawn();
        try {
          let pid: number | undefined;
          for (let i = 0; i < 100 && pid === undefined; i++) {
            await new Promise((resolve) => setTimeout(resolve, 100));
            pid = idleProcess(seconds);
          }
          assert(pid !== undefined, "the idle process runs");
          // The kernel ran Deno on the launcher; what it imported is told by memory alone:
          // printed, not asserted (a figure, not a test).
          await new Promise((resolve) => setTimeout(resolve, 2000));
          const rss = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+)/)![1];
          console.log(
            `image: the idle process's RSS after 2 s: ${Math.round(Number(rss) / 1024)} MiB`,
          );
          assertEquals(
            Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").slice(0, 5),
            ["/opt/tcpgadget/deno", "-A", "/usr/local/bin/tcpgadget", "agent", "idle"],
          );
          Deno.kill(pid, "SIGTERM");
          const status = await child.output();
          assertEquals([status.code, decoder.decode(status.stderr)], [0, ""]);
        } finally {
          try {
            child.kill("SIGKILL");
          } catch {
            // ended
          }
        }
      },
    });

    await t.step({
      name: "in the chroot, with the host at /host (read-only) as in a pod, it traces a connection",
      ignore: SKIP.chroot !== undefined || needsBpf(FILE),
      fn: async () => {
        for (const path of ["host", "sys", "dev"]) await Deno.mkdir(`${root}/${path}`);
        const setup = `mount --rbind / ${root}/host && mount -o remount,bind,ro ${root}/host && ` +
          `mount --rbind /sys ${root}/sys && mount --rbind /dev ${root}/dev`;
        const [command, ...wrapper] = inChroot(root, envOf(expectedConfig), setup);
        const child = new Deno.Command(command, {
          args: [
            ...wrapper,
            "/usr/local/bin/tcpgadget",
            "trace",
            "tcp",
            "-o",
            "json",
            "--host-root",
            "/host",
          ],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let stdout = "";
        let stderr = "";
        const reading = Promise.all([
          (async () => {
            for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) stdout += c;
          })(),
          (async () => {
            for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) stderr += c;
          })(),
        ]);
        const server = await Actor.start("tg-img-server");
        const client = await Actor.start("tg-img-client");
        try {
          const until = async (what: string, condition: () => boolean) => {
            const deadline = performance.now() + 30_000;
            while (!condition()) {
              assert(performance.now() < deadline, `${what}; stdout ${stdout}; stderr ${stderr}`);
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
          };
          await until("not attached", () => stderr.includes("tracing TCP connections"));
          const listener = await server.do("listen 127.0.0.1");
          const connected = await client.do(`connect 127.0.0.1 ${listener.port}`);
          await server.do(`accept ${listener.sock}`);
          const events = () =>
            stdout.split("\n").filter((line) => line.startsWith("{")).map((line) =>
              JSON.parse(line)
            ).filter((event) => event.comm === "tg-img-client" || event.comm === "tg-img-server");
          await until("no connect and accept events", () => events().length >= 2);
          const fields = (event: Record<string, unknown>) => ({
            operation: event.operation,
            pid: event.pid,
            comm: event.comm,
            saddr: event.saddr,
            daddr: event.daddr,
            sport: event.sport,
            dport: event.dport,
          });
          assertEquals(events().slice(0, 2).map(fields), [
            {
              operation: "connect",
              pid: client.pid,
              comm: "tg-img-client",
              saddr: "127.0.0.1",
              daddr: "127.0.0.1",
              sport: connected.sport,
              dport: listener.port,
            },
            {
              operation: "accept",
              pid: server.pid,
              comm: "tg-img-server",
              saddr: "127.0.0.1",
              daddr: "127.0.0.1",
              sport: listener.port,
              dport: connected.sport,
            },
          ]);
        } finally {
          await client.stop();
          await server.stop();
          child.kill("SIGINT");
          const status = await child.status;
          await reading;
          assertEquals(status.code, 0, stderr);
        }
      },
    });

    await t.step({
      name: "pushed to a registry (docker-registry) with skopeo: the digest the build printed",
      ignore: registrySkipReason() !== undefined,
      fn: async () => {
        await using registry = await Registry.start();
        assertEquals(await registry.push(archive, "tcpgadget:test"), first.digest);
        const pushed = JSON.parse(
          decoder.decode(
            await run("skopeo", [
              "inspect",
              "--tls-verify=false",
              `docker://${registry.host}/tcpgadget:test`,
            ]),
          ),
        );
        assertEquals(pushed.Digest, first.digest);
        assertEquals(pushed.Layers, [layerDigest]);
        assertEquals(pushed.Architecture, "amd64");
        // What the registry serves, by digest: the manifest's own bytes.
        const answer = await fetch(
          `http://${registry.host}/v2/tcpgadget/manifests/${first.digest}`,
          { headers: { Accept: "application/vnd.oci.image.manifest.v1+json" } },
        );
        assertEquals(answer.headers.get("docker-content-digest"), first.digest);
        assertEquals(
          new Uint8Array(await answer.arrayBuffer()),
          await Deno.readFile(manifestPath),
        );
      },
    });

    await t.step("reproducible: a second build writes the same bytes", async () => {
      const second = await build(
        ["--output", `${dir}/again.tar`, "--tag", `tcpgadget:${VERSION}`],
        "/",
      );
      assertEquals(second.code, 0, second.stderr);
      assertEquals(second.digest, first.digest);
      assertEquals(await sha256File(`${dir}/again.tar`), await sha256File(archive));
      console.log(`image: second build ${(second.ms / 1000).toFixed(1)} s`);
    });

    await t.step("another tag: another name in the archive, the same image", async () => {
      const third = await build(
        ["--output", "mine.tar", "--tag", "registry.example:5000/ops/tg"],
        dir,
      );
      assertEquals(third.code, 0, third.stderr);
      assertEquals(
        third.stderr.trimEnd().split("\n")[1],
        "tcpgadget: push it with: skopeo copy oci-archive:mine.tar docker://registry.example:5000/ops/tg:latest",
      );
      const other = `${dir}/other`;
      await Deno.mkdir(other);
      await run("tar", ["-xf", `${dir}/mine.tar`, "-C", other, "index.json", "manifest.json"]);
      const otherIndex = JSON.parse(await Deno.readTextFile(`${other}/index.json`));
      assertEquals(otherIndex.manifests[0].annotations, {
        "io.containerd.image.name": "registry.example:5000/ops/tg:latest",
        "org.opencontainers.image.ref.name": "latest",
      });
      assertEquals(otherIndex.manifests[0].digest, first.digest);
      assertEquals(
        JSON.parse(await Deno.readTextFile(`${other}/manifest.json`))[0].RepoTags,
        ["registry.example:5000/ops/tg:latest"],
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image build: a compiled program's image holds the binary as the entrypoint, and runs", {
  ignore: SKIP.chroot !== undefined,
}, async () => {
  // A compiled tcpgadget needs denort, which cannot be downloaded here: another
  // binary with libraries of its own (ls: libselinux, libpcre2) takes its place.
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-image-test-" });
  const work = await makeBundleDir();
  try {
    const archive = await OciArchiveFile.create(`${dir}/compiled.tar`);
    try {
      const image = await writeAgentImage(archive, {
        program: { compiled: true, binary: "/usr/bin/ls" },
        version: VERSION,
        reference: parseImageReference("tcpgadget:compiled"),
        workDir: work.path,
      });
      const root = `${dir}/root`;
      await Deno.mkdir(root);
      await run("tar", ["-xzf", image.layer.path, "-C", root]);
      const names = image.layer.names.filter((name) => !name.endsWith("/"));
      const ldd = decoder.decode(await run("ldd", ["/usr/bin/ls"]));
      const needed = [...ldd.matchAll(/^\s*\S+ => (\S+)/gm)].map((m) => m[1].slice(1));
      assertEquals(
        names,
        // ls's libraries, and the loader under the name libc and libbpf need it by.
        [...needed, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"].sort()
          .concat(["lib64/ld-linux-x86-64.so.2", "usr/local/bin/tcpgadget"]),
      );
      assertEquals(
        await sha256File(`${root}/usr/local/bin/tcpgadget`),
        await sha256File("/usr/bin/ls"),
      );
      await Deno.mkdir(`${root}/proc`);
      const out = await runWords([...inChroot(root, {}), "/usr/local/bin/tcpgadget", "-a", "/tmp"]);
      assertEquals(decoder.decode(out), ".\n..\n");
    } finally {
      await archive.discard();
    }
  } finally {
    await work.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image build: bad input is one line and a non-zero status, and writes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-image-test-" });
  try {
    const cases: [string[], number, string][] = [
      [
        ["image"],
        2,
        "image needs a subcommand: tcpgadget image build [--output FILE] [--tag NAME]",
      ],
      [["image", "push"], 2, `unknown image subcommand "push": only "build" is available`],
      [
        ["image", "build", "--bogus"],
        2,
        "unknown flag --bogus (see 'tcpgadget image build --help')",
      ],
      [
        ["image", "build", "extra"],
        2,
        "unexpected argument extra (see 'tcpgadget image build --help')",
      ],
      [["image", "build", "--output"], 2, "--output needs a value"],
      [
        ["image", "build", "--tag", "Tcpgadget:1"],
        2,
        `--tag "Tcpgadget:1" is not an image name: "Tcpgadget" must be lowercase letters and digits, separated by '.', '_' or '-' (e.g. tcpgadget:0.1.0)`,
      ],
      [
        ["image", "build", "--tag", "tcpgadget@sha256:00"],
        2,
        `--tag "tcpgadget@sha256:00" is not an image name: a digest cannot be given, only a tag (e.g. tcpgadget:0.1.0)`,
      ],
      [
        ["image", "build", "--output", `${dir}/missing/a.tar`],
        1,
        `cannot write ${dir}/missing/a.tar: directory ${dir}/missing does not exist`,
      ],
      [["image", "build", "--output", dir], 1, `cannot write ${dir}: it is a directory`],
    ];
    for (const [args, code, message] of cases) {
      const result = await CliRun.run(args);
      assertEquals([result.code, result.stderr, result.stdout], [
        code,
        `tcpgadget: ${message}\n`,
        "",
      ]);
    }
    const help = await CliRun.run(["image", "build", "--help"]);
    assertEquals([help.code, help.stdout], [0, `${IMAGE_BUILD_HELP}\n`]);
    assertEquals([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "image build: a read-only output directory is said at once",
  ignore: SKIP.chroot !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-image-test-" });
    try {
      const result = await CliRun.run(["image", "build", "--output", `${dir}/a.tar`], {
        wrapper: inPrivateMounts(`mount -t tmpfs -o ro tgtest ${dir}`),
      });
      assertEquals(
        [result.code, result.stderr],
        [
          1,
          `tcpgadget: cannot write ${dir}/a.tar: directory ${dir} is on a read-only file system\n`,
        ],
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "image build: a full disk is one line, and leaves no half archive",
  ignore: SKIP.chroot !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-image-test-" });
    try {
      // A 4 MB file system for the output; what is left in it is listed after the build.
      const result = await CliRun.run(["image", "build", "--output", `${dir}/a.tar`], {
        wrapper: [
          ...inPrivateMounts(`mount -t tmpfs -o size=4m tgtest ${dir}`),
          "sh",
          "-c",
          `"$@"; status=$?; ls -A ${dir}; exit $status`,
          "sh",
        ],
      });
      assertEquals([result.code, result.stderr, result.stdout], [
        1,
        `tcpgadget: writing ${dir}/a.tar: No space left on device (os error 28)\n`,
        "",
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The processes whose command line mentions `text` (a leftover `deno bundle`). */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes(text)) {
        found.push(Number(entry.name));
      }
    } catch {
      // gone
    }
  }
  return found;
}

for (
  const [signal, when, status] of [
    ["SIGINT", "while the layer is written", 130],
    ["SIGTERM", "while the bundle is made", 143],
  ] as const
) {
  Deno.test(`image build: ${signal} ${when} stops it within a second, leaving no file`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-image-test-" });
    const tmp = await Deno.makeTempDir({ prefix: "tcpgadget-image-tmp-" });
    try {
      const [command, ...rest] = tcpgadgetCommand();
      const child = new Deno.Command(command, {
        args: [...rest, "image", "build", "--output", `${dir}/image.tar`],
        // The build's own temporary directory goes here, to be seen and checked.
        env: { TMPDIR: tmp },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const output = child.output();
      const ready = signal === "SIGINT"
        ? () => {
          // The layer is being written: part of it is on disk.
          for (const entry of Deno.readDirSync(tmp)) {
            try {
              if (Deno.statSync(`${tmp}/${entry.name}/layer.tar.gz`).size > 1 << 20) return true;
            } catch {
              // not yet
            }
          }
          return false;
        }
        : () => processesMentioning(`${tmp}/tcpgadget-bundle-`).length > 0;
      const deadline = performance.now() + 60_000;
      while (!ready()) {
        assert(performance.now() < deadline, `the build did not get ${when}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const sent = performance.now();
      child.kill(signal);
      const result = await output;
      const ms = performance.now() - sent;
      assert(ms < 1500, `exited ${ms.toFixed(0)} ms after ${signal}`);
      assertEquals(
        [result.code, decoder.decode(result.stderr)],
        [status, "tcpgadget: interrupted: no image written\n"],
      );
      assertEquals([...Deno.readDirSync(dir)], [], "nothing next to the output");
      assertEquals([...Deno.readDirSync(tmp)], [], "the temporary directory removed");
      assertEquals(processesMentioning(tmp), [], "no process left");
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(tmp, { recursive: true });
    }
  });
}
