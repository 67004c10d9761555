/**
 * The images the test cluster's pods run, made on this machine since no
 * registry can be reached, as OCI image archives cached by recipe and
 * version, then imported into containerd's `k8s.io` namespace (the CRI
 * plugin's) under their exact names:
 *
 * - the agent image, `debian:bookworm-slim` (tcpgadget's default `--image`):
 *   a debootstrap `minbase` root file system (sh, coreutils, grep, glibc),
 *   with docs, man pages and apt lists removed as the slim images do;
 * - the workload image: the same plus `python3` (its whole standard library);
 * - the sandbox ("pause") image: one static program that sleeps, reaps
 *   zombies and exits on SIGTERM or SIGINT.
 *
 * Each archive is one uncompressed layer (`tar` keeps owners, modes, links
 * and device nodes exactly), a config and a manifest, in an OCI image layout
 * whose index names the image (`io.containerd.image.name`).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { cache } from "./layout.ts";
import { VERSIONS } from "./versions.ts";
import { ClusterError, elapsed, exists, hasCommand, run, say } from "./util.ts";

export type ImageKind = keyof typeof VERSIONS.images;

const MIRROR = Deno.env.get("TCPGADGET_DEBIAN_MIRROR") ?? "http://deb.debian.org/debian";

const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The cached archive of an image. */
export function imageArchive(kind: ImageKind): string {
  const { recipe } = VERSIONS.images[kind];
  const base = kind === "pause" ? "pause" : `${kind}-${VERSIONS.imageSuite}`;
  return `${cache.images}/${base}-r${recipe}.tar`;
}

const PAUSE_C = `/* The pod sandbox's only process: holds the pod's namespaces. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

/* PID 1 of a shared PID namespace inherits orphans: reap them. */
static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction down = {0}, child = {0};
  down.sa_handler = stop;
  sigaction(SIGINT, &down, NULL);
  sigaction(SIGTERM, &down, NULL);
  child.sa_handler = reap;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &child, NULL);
  for (;;) pause();
}
`;

interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
}

/** Makes every missing image archive. */
export async function buildImages(): Promise<void> {
  Deno.mkdirSync(cache.images, { recursive: true });
  pruneOldArchives();
  for (const kind of ["pause", "agent", "workload"] as const) {
    if (exists(imageArchive(kind))) continue;
    const start = Date.now();
    say(`making image ${VERSIONS.images[kind].name}`);
    const work = `${cache.images}/work-${kind}`;
    await removeTree(work);
    const rootfs = `${work}/rootfs`;
    Deno.mkdirSync(rootfs, { recursive: true });
    let config: ImageConfig;
    if (kind === "pause") {
      await makePauseRootfs(work, rootfs);
      config = { entrypoint: ["/pause"] };
    } else {
      await debootstrap(rootfs, kind === "workload" ? ["python3"] : []);
      config = { cmd: kind === "workload" ? ["python3"] : ["bash"] };
    }
    await writeArchive(work, rootfs, VERSIONS.images[kind].name, config, imageArchive(kind));
    await removeTree(work);
    say(`made image ${VERSIONS.images[kind].name} in ${elapsed(start)} s`);
  }
}

/** Archives of earlier recipes or suites: never used again. */
function pruneOldArchives(): void {
  const current = new Set(
    (["pause", "agent", "workload"] as const).map((kind) => imageArchive(kind).split("/").pop()),
  );
  for (const entry of Deno.readDirSync(cache.images)) {
    if (entry.isFile && entry.name.endsWith(".tar") && !current.has(entry.name)) {
      Deno.removeSync(`${cache.images}/${entry.name}`);
    }
  }
}

async function makePauseRootfs(work: string, rootfs: string): Promise<void> {
  if (!hasCommand("gcc")) {
    throw new ClusterError("gcc is not installed (needed for the pause image)");
  }
  Deno.writeTextFileSync(`${work}/pause.c`, PAUSE_C);
  await run("gcc", ["-static", "-Os", "-s", "-o", `${rootfs}/pause`, `${work}/pause.c`]);
}

async function debootstrap(rootfs: string, include: string[]): Promise<void> {
  if (!hasCommand("debootstrap")) throw new ClusterError("debootstrap is not installed");
  const debs = `${cache.images}/debs`;
  Deno.mkdirSync(debs, { recursive: true });
  await run("debootstrap", [
    "--variant=minbase",
    `--cache-dir=${debs}`,
    ...(include.length ? [`--include=${include.join(",")}`] : []),
    VERSIONS.imageSuite,
    rootfs,
    MIRROR,
  ]);
  // As Debian's -slim images: no docs, man pages, apt lists or caches; and
  // nothing of this host (hostname, resolv.conf: the kubelet provides them).
  await run("sh", [
    "-c",
    `cd "$1" && rm -rf usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* \
      var/cache/apt/* var/lib/apt/lists/* var/log/*.log var/log/apt/* var/cache/debconf/*-old \
      dev/* proc/* sys/* && : > etc/hostname && : > etc/resolv.conf`,
    "sh",
    rootfs,
  ]);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buffer = new Uint8Array(1 << 20);
  while (true) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

function goArch(): string {
  return Deno.build.arch === "aarch64" ? "arm64" : "amd64";
}

/** One-layer OCI image layout for `rootfs`, archived as `archive`. */
async function writeArchive(
  work: string,
  rootfs: string,
  name: string,
  config: ImageConfig,
  archive: string,
): Promise<void> {
  const layout = `${work}/layout`;
  const blobs = `${layout}/blobs/sha256`;
  Deno.mkdirSync(blobs, { recursive: true });
  const layerTmp = `${work}/layer.tar`;
  await run("tar", ["--numeric-owner", "--xattrs", "-C", rootfs, "-cf", layerTmp, "."]);
  const layerDigest = await sha256File(layerTmp);
  const layerSize = Deno.statSync(layerTmp).size;
  Deno.renameSync(layerTmp, `${blobs}/${layerDigest}`);

  const blob = (data: unknown) => {
    const bytes = new TextEncoder().encode(JSON.stringify(data));
    const digest = createHash("sha256").update(bytes).digest("hex");
    Deno.writeFileSync(`${blobs}/${digest}`, bytes);
    return { digest: `sha256:${digest}`, size: bytes.length };
  };
  const imageConfig = blob({
    architecture: goArch(),
    os: "linux",
    config: {
      Env: [PATH_ENV],
      ...(config.entrypoint ? { Entrypoint: config.entrypoint } : {}),
      ...(config.cmd ? { Cmd: config.cmd } : {}),
    },
    rootfs: { type: "layers", diff_ids: [`sha256:${layerDigest}`] },
    history: [{ created_by: "tcpgadget tests/real_cluster/images.ts" }],
  });
  const manifest = blob({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...imageConfig },
    layers: [{
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: `sha256:${layerDigest}`,
      size: layerSize,
    }],
  });
  Deno.writeTextFileSync(`${layout}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  Deno.writeTextFileSync(
    `${layout}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifest,
        platform: { architecture: goArch(), os: "linux" },
        annotations: {
          "io.containerd.image.name": name,
          "org.opencontainers.image.ref.name": name.slice(name.lastIndexOf(":") + 1),
        },
      }],
    }),
  );
  const tmp = `${archive}.tmp`;
  await run("tar", ["-C", layout, "-cf", tmp, "oci-layout", "index.json", "blobs"]);
  Deno.renameSync(tmp, archive);
}

async function removeTree(path: string): Promise<void> {
  // A root file system holds device nodes and read-only dirs: rm copes with both.
  if (exists(path)) await run("rm", ["-rf", "--one-file-system", path]);
}

/** Imports every image into containerd's k8s.io namespace (and unpacks it for overlayfs). */
export async function importImages(socket: string): Promise<void> {
  const start = Date.now();
  for (const kind of ["pause", "agent", "workload"] as const) {
    await run("ctr", ["--address", socket, "-n", "k8s.io", "images", "import", imageArchive(kind)]);
  }
  const { stdout } = await run("ctr", ["--address", socket, "-n", "k8s.io", "images", "ls", "-q"]);
  const names = stdout.split("\n");
  for (const kind of ["pause", "agent", "workload"] as const) {
    if (!names.includes(VERSIONS.images[kind].name)) {
      throw new ClusterError(
        `image ${VERSIONS.images[kind].name} is not in containerd after import (found: ${
          names.filter(Boolean).join(", ")
        })`,
      );
    }
  }
  say(`imported 3 images into containerd in ${elapsed(start)} s`);
}
