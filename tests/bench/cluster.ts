/**
 * Cluster mode's start at scale: for N nodes of the test API server
 * (tests/kube_apiserver/, whose fake kubelets run each pod's processes on
 * this machine), the bytes the client sends, the seconds from its start to
 * every node tracing, and its peak RSS; for this design (one upload from
 * the client, copies between agents) and, as the reference row, for the
 * design before it (an upload per node, 4 at a time: the commit
 * REFERENCE_COMMIT, taken from git), and for an image that holds
 * tcpgadget (--agent-image: the fake pods see its files; nothing is
 * pulled). Prints figures; passes or fails nothing.
 *
 *   deno task bench:cluster [--nodes 1,4,16,32] [--rate 10]
 *     [--designs one-upload,per-node,agent-image] [--no-codecs] [--real]
 *
 * The client runs in a network namespace of its own, linked to this one by
 * a veth pair shaped with tbf to --rate MB/s each way; the API server (here
 * through a TCP relay on the veth's address) and the fake kubelets' pods
 * stay outside, so that only the client's link is limited, as for a laptop
 * far from its cluster. Bytes are counted on the veth (TCP/IP and TLS
 * overhead included). The agents trace a namespace without pods, so that
 * no event crosses the link.
 *
 * Then the codecs the upload could use: size and compression time here,
 * unpack time in a pod (the test API server's, and the real test cluster's
 * debian:bookworm-slim when it is up).
 *
 * Needs root (BPF, network namespaces, tc) and the fake API server's tools.
 *
 * @module
 */

import { parseArgs } from "node:util";
import zlib from "node:zlib";
import { execInPod } from "../../k8s/api/exec.ts";
import { loadKubeconfig } from "../../k8s/api/kubeconfig.ts";
import { createLinkedNetns, type LinkedNetns } from "../helpers/netns.ts";
import { clusterSkipReason } from "../helpers/cluster.ts";
import { type FakeApiServer, startFakeApiServer } from "../kube_apiserver/mod.ts";
import { machineDescription, peakRssBytes } from "./procfs.ts";
import { forgetImages, Registry, registrySkipReason } from "../helpers/registry.ts";
import { unpackedAgentImage } from "../helpers/agent_image.ts";
import { state as testClusterState } from "../real_cluster/layout.ts";

/** The last commit of the design with one upload per node (4 at a time, not packed). */
const REFERENCE_COMMIT = "c8ca671c72baeba99141e53c726dc229bf242b17";

const REPO = new URL("../../", import.meta.url).pathname;

const USAGE = `Usage: deno task bench:cluster [options]

Cluster mode's start for N nodes of the test API server, the client behind a shaped link:
bytes sent by the client, seconds to every node tracing, the client's peak RSS; for this
design and the one before (one upload per node). Then the codecs. Needs root.

Options:
  --nodes N,...     node counts (default 1,4,16,32)
  --rate MB/s       the client's link, each way (default 10)
  --designs A,...   one-upload (this one), per-node (the reference), agent-image (an image
                    of tcpgadget, --agent-image: its files given to the fake pods, no pull;
                    default all three)
  --no-codecs       skip the codec measurements
  --timeline        print each line of the client's stderr with when it came
  --real            also on the real test cluster (TCPGADGET_E2E_KUBECONFIG, deno task
                    cluster:up), one node: the upload against --agent-image (tcpgadget image
                    build, pushed to a registry on loopback: its first pull, then cached)
  -h, --help        this text
`;

interface Design {
  name: string;
  /** The command that runs tcpgadget. */
  command: string[];
  /** Added to `trace tcp --cluster`. */
  args?: string[];
  /** Sets up the fake API server before the client starts. */
  prepare?(api: FakeApiServer): void;
}

interface Measured {
  design: string;
  nodes: number;
  bytes: number;
  seconds: number;
  rssMib: number;
  /** The payload's unpacked size, as the client said. */
  payloadBytes: number;
  stderr: string;
  /** Each stderr line with when it came. */
  timeline: string[];
}

function run(args: string[]): string {
  const result = new Deno.Command(args[0], {
    args: args.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .outputSync();
  if (!result.success) {
    throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
  return new TextDecoder().decode(result.stdout);
}

/** A link limited to `rate` bytes per second each way (tbf on both veths). */
function shapedLink(rate: number): LinkedNetns {
  const link = createLinkedNetns();
  const tbf = (dev: string) => [
    "tc",
    "qdisc",
    "add",
    "dev",
    dev,
    "root",
    "tbf",
    "rate",
    `${rate * 8}bit`,
    "burst",
    "256kb",
    "latency",
    "100ms",
  ];
  run(tbf(link.hostInterface));
  run(["ip", "netns", "exec", link.name, ...tbf(link.nsInterface)]);
  return link;
}

/** Relays TCP connections to `hostname`:`port` on this side to the API server on loopback. */
function relay(hostname: string, target: number): { port: number; close(): void } {
  const listener = Deno.listen({ hostname, port: 0 });
  const connections = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      connections.add(conn);
      (async () => {
        try {
          const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target });
          connections.add(upstream);
          await Promise.allSettled([
            conn.readable.pipeTo(upstream.writable),
            upstream.readable.pipeTo(conn.writable),
          ]);
        } catch {
          // a side went away
        }
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const conn of connections) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
    },
  };
}

function receivedBytes(hostInterface: string): number {
  return Number(Deno.readTextFileSync(`/sys/class/net/${hostInterface}/statistics/rx_bytes`));
}

/** The kubeconfig for a client in `link`'s namespace: the relay's address, the server's name. */
async function kubeconfigThrough(api: ApiEndpoint, address: string, port: number) {
  const yaml = api.kubeconfig
    .replace(api.url, `https://${address}:${port}`)
    .replace(/^( +)server: (.*)$/m, "$1server: $2\n$1tls-server-name: localhost");
  const path = `${api.dir}/kubeconfig-shaped`;
  await Deno.writeTextFile(path, yaml, { mode: 0o600 });
  return path;
}

async function measure(design: Design, nodes: number, rate: number): Promise<Measured> {
  await using api = await startFakeApiServer({
    nodes: Array.from({ length: nodes }, (_, i) => ({ name: `node-${i}` })),
  });
  design.prepare?.(api);
  return await measureThrough(
    { kubeconfig: await api.kubeconfig(), url: api.url, port: api.port, dir: api.dir },
    design,
    nodes,
    rate,
  );
}

/** An API server to measure against: its kubeconfig, URL and loopback port. */
interface ApiEndpoint {
  kubeconfig: string;
  url: string;
  port: number;
  /** Where the rewritten kubeconfig is written. */
  dir: string;
}

/** Runs the client behind a shaped link to `api` until `nodes` nodes trace. */
async function measureThrough(
  api: ApiEndpoint,
  design: Design,
  nodes: number,
  rate: number,
): Promise<Measured> {
  await using link = shapedLink(rate * 1e6);
  const forward = relay(link.hostAddress, api.port);
  try {
    const kubeconfig = await kubeconfigThrough(api, link.hostAddress, forward.port);
    const before = receivedBytes(link.hostInterface);
    const started = performance.now();
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        link.name,
        ...design.command,
        "trace",
        "tcp",
        "--cluster",
        "--kubeconfig",
        kubeconfig,
        // A namespace without pods: the agents send no event over the link.
        "-n",
        "tcpgadget-bench-none",
        "-o",
        "json",
        ...(design.args ?? []),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let stderr = "";
    const timeline: string[] = [];
    const line = `tracing TCP connections on ${nodes} node`;
    const reading = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        stderr += chunk;
        const at = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
        for (const l of chunk.split("\n").filter(Boolean)) timeline.push(`${at} s  ${l}`);
      }
    })();
    const deadline = started + 1800_000;
    while (!stderr.includes(line) && performance.now() < deadline) {
      const status = await Promise.race([
        child.status,
        new Promise((resolve) => setTimeout(resolve, 50)),
      ]);
      if (status) throw new Error(`${design.name}, ${nodes} nodes: the client ended: ${stderr}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const bytes = receivedBytes(link.hostInterface) - before;
    const rss = peakRssBytes(child.pid) ?? 0;
    child.kill("SIGINT");
    await child.status;
    await reading;
    if (!stderr.includes(line)) throw new Error(`${design.name}: no node traced: ${stderr}`);
    const payload = stderr.match(/\(([\d.]+) MB unpacked\)/)?.[1] ??
      stderr.match(/uploaded ([\d.]+) MB in/)?.[1];
    return {
      design: design.name,
      nodes,
      bytes,
      seconds,
      rssMib: rss / 1024 / 1024,
      payloadBytes: Number(payload ?? 0) * 1e6,
      stderr,
      timeline,
    };
  } finally {
    forward.close();
  }
}

/** The reference design's program, from git, in a temporary directory. */
async function referenceCheckout(): Promise<{ dir: string; mod: string } | string> {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-bench-reference-" });
  const extract = await new Deno.Command("bash", {
    args: [
      "-c",
      'set -o pipefail; git -C "$1" archive --format=tar "$2" | tar -x -C "$3"',
      "bash",
      REPO,
      REFERENCE_COMMIT,
      dir,
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  if (!extract.success) {
    await Deno.remove(dir, { recursive: true });
    return `git archive ${REFERENCE_COMMIT.slice(0, 7)} failed (a shallow clone?)`;
  }
  return { dir, mod: `${dir}/mod.ts` };
}

function formatMeasured(m: Measured): string {
  return `cluster-bench design=${m.design} nodes=${m.nodes} bytes=${m.bytes} seconds=${
    m.seconds.toFixed(1)
  } rss_mib=${m.rssMib.toFixed(0)}`;
}

/** How each codec packs the Deno executable, and unpacks in a pod. */
async function codecs(): Promise<void> {
  console.log("\n# Codecs: the Deno executable packed here, unpacked in a pod\n");
  const source = Deno.execPath();
  const size = (await Deno.stat(source)).size;
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-bench-codecs-" });
  try {
    const packed: { name: string; path: string; unpack: string; seconds: number }[] = [];
    for (const level of [1, 3, 5, 6, 9]) {
      const path = `${dir}/deno.gz${level}`;
      const started = performance.now();
      await new Promise<void>((resolve, reject) => {
        const out = Deno.openSync(path, { write: true, create: true });
        const data = Deno.readFileSync(source);
        zlib.gzip(data, { level }, (error, result) => {
          if (error) return reject(error);
          out.writeSync(result);
          out.close();
          resolve();
        });
      });
      packed.push({
        name: `gzip -${level} (node:zlib here)`,
        path,
        unpack: "gzip -dc",
        seconds: (performance.now() - started) / 1000,
      });
    }
    for (
      const [name, command, args, unpack] of [
        ["xz -6", "xz", ["-6", "-T1", "-c"], "xz -dc"],
        ["zstd -3", "zstd", ["-3", "-T1", "-c"], "zstd -dc"],
        ["zstd -19", "zstd", ["-19", "-T1", "-c"], "zstd -dc"],
      ] as const
    ) {
      const path = `${dir}/deno.${command}${args[0]}`;
      const started = performance.now();
      try {
        const out = await new Deno.Command("sh", {
          args: ["-c", `${command} ${args.join(" ")} "$1" > "$2"`, "sh", source, path],
        }).output();
        if (!out.success) continue;
      } catch {
        continue;
      }
      packed.push({ name, path, unpack, seconds: (performance.now() - started) / 1000 });
    }
    const fake = await unpackTimes(packed, "fake");
    const real = await unpackTimes(packed, "real");
    console.log(
      `${"codec".padEnd(26)}${"size MB".padStart(9)}${"ratio".padStart(8)}${"pack s".padStart(8)}${
        "unpack s (fake pod)".padStart(21)
      }${"unpack s (bookworm-slim)".padStart(26)}`,
    );
    console.log(
      `${"none".padEnd(26)}${(size / 1e6).toFixed(1).padStart(9)}${"1.00".padStart(8)}${
        "-".padStart(8)
      }${"-".padStart(21)}${"-".padStart(26)}`,
    );
    for (const p of packed) {
      const packedSize = (await Deno.stat(p.path)).size;
      console.log(
        `${p.name.padEnd(26)}${(packedSize / 1e6).toFixed(1).padStart(9)}${
          (packedSize / size).toFixed(2).padStart(8)
        }${p.seconds.toFixed(2).padStart(8)}${(fake.get(p.name) ?? "-").padStart(21)}${
          (real.get(p.name) ?? "-").padStart(26)
        }`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Unpack time of each packed file in a pod: the test API server's, or the real cluster's. */
async function unpackTimes(
  packed: { name: string; path: string; unpack: string }[],
  where: "fake" | "real",
): Promise<Map<string, string>> {
  const times = new Map<string, string>();
  let api: FakeApiServer | undefined;
  let kubeconfigPath: string;
  let namespace = "default";
  let image = "debian:bookworm-slim";
  if (where === "fake") {
    api = await startFakeApiServer({ nodes: [{ name: "node-a" }] });
    kubeconfigPath = `${api.dir}/kubeconfig`;
    await api.writeKubeconfig(kubeconfigPath);
  } else {
    kubeconfigPath = Deno.env.get("TCPGADGET_E2E_KUBECONFIG") ??
      "/var/lib/tcpgadget-test-cluster/admin.kubeconfig";
    try {
      Deno.statSync(kubeconfigPath);
    } catch {
      console.log(`(no real test cluster: ${kubeconfigPath} not found)`);
      return times;
    }
    namespace = "tcpgadget-e2e";
    image = Deno.env.get("TCPGADGET_E2E_IMAGE") ?? image;
  }
  const kubeconfig = loadKubeconfig({ kubeconfig: kubeconfigPath });
  const core = kubeconfig.config.makeApiClient((await import("@kubernetes/client-node")).CoreV1Api);
  const name = `tcpgadget-bench-codecs-${Deno.pid}`;
  try {
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name },
        spec: {
          // The test API server has no scheduler.
          nodeName: where === "fake" ? "node-a" : undefined,
          restartPolicy: "Never",
          activeDeadlineSeconds: 900,
          terminationGracePeriodSeconds: 1,
          containers: [{
            name: "c",
            image,
            command: ["sleep", "900"],
            volumeMounts: [{ name: "work", mountPath: "/work" }],
          }],
          volumes: [{ name: "work", emptyDir: {} }],
        },
      },
    });
    for (let i = 0; i < 600; i++) {
      const pod = await core.readNamespacedPod({ namespace, name });
      if (pod.status?.phase === "Running") break;
      if (pod.status?.phase === "Failed") throw new Error(`pod ${name} failed`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const target = { kubeconfig, namespace, pod: name, container: "c" };
    for (const p of packed) {
      const file = await Deno.open(p.path);
      await execInPod(target, ["sh", "-c", "cat > /work/packed"], { stdin: file.readable });
      let output = "";
      const tool = p.unpack.split(" ")[0];
      const { exitCode } = await execInPod(target, [
        "sh",
        "-c",
        `command -v ${tool} >/dev/null || { echo absent; exit 0; }; ` +
        `s=$(date +%s%N); ${p.unpack} /work/packed > /dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))`,
      ], { onStdout: (chunk) => output += new TextDecoder().decode(chunk) });
      const text = output.trim();
      times.set(
        p.name,
        exitCode !== 0
          ? "failed"
          : text === "absent"
          ? "not in the image"
          : (Number(text) / 1000).toFixed(2),
      );
    }
  } finally {
    await core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 }).catch(() => {});
    await api?.close();
  }
  return times;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nodes: { type: "string", default: "1,4,16,32" },
      rate: { type: "string", default: "10" },
      designs: { type: "string", default: "one-upload,per-node,agent-image" },
      "no-codecs": { type: "boolean", default: false },
      timeline: { type: "boolean", default: false },
      real: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const skip = clusterSkipReason();
  if (skip) {
    console.error(`cluster bench: ${skip}`);
    return 1;
  }
  const counts = values.nodes.split(",").map(Number);
  const rate = Number(values.rate);
  const wanted = values.designs.split(",");
  for (const line of machineDescription(REPO)) console.log(line);
  console.log(`client link: ${rate} MB/s each way (tbf on a veth pair)\n`);

  const designs: Design[] = [];
  let reference: { dir: string } | undefined;
  if (wanted.includes("one-upload")) {
    designs.push({ name: "one-upload", command: [Deno.execPath(), "run", "-A", `${REPO}mod.ts`] });
  }
  if (wanted.includes("per-node")) {
    const checkout = await referenceCheckout();
    if (typeof checkout === "string") console.log(`(no reference row: ${checkout})`);
    else {
      reference = checkout;
      designs.push({ name: "per-node", command: [Deno.execPath(), "run", "-A", checkout.mod] });
    }
  }
  let imageDir: string | undefined;
  if (wanted.includes("agent-image")) {
    imageDir = await Deno.makeTempDir({ prefix: "tcpgadget-bench-image-" });
    const files = await unpackedAgentImage(imageDir);
    const image = "tcpgadget-bench/tcpgadget:1";
    designs.push({
      name: "agent-image",
      command: [Deno.execPath(), "run", "-A", `${REPO}mod.ts`],
      args: ["--agent-image", image],
      prepare: (api) => api.provideImage(image, files),
    });
  }
  const results: Measured[] = [];
  try {
    for (const design of designs) {
      for (const nodes of counts) {
        console.log(`# ${design.name}, ${nodes} node${nodes === 1 ? "" : "s"}`);
        const measured = await measure(design, nodes, rate);
        const copies = measured.stderr.split("\n").filter((line) =>
          / (uploaded|copied) /.test(line)
        );
        const uploads = copies.filter((line) => line.includes(" uploaded ")).length;
        console.log(
          `  ${uploads} upload${uploads === 1 ? "" : "s"} from the client, ${
            copies.length - uploads
          } cop${copies.length - uploads === 1 ? "y" : "ies"} between agents; payload ${
            (measured.payloadBytes / 1e6).toFixed(1)
          } MB`,
        );
        for (
          const line of measured.stderr.split("\n").filter((l) =>
            / failed | interrupted |cannot /.test(l)
          )
        ) console.log(`  ${line}`);
        if (values.timeline) { for (const l of measured.timeline) console.log(`  ${l}`); }
        console.log(formatMeasured(measured));
        results.push(measured);
      }
    }
  } finally {
    if (reference) await Deno.remove(reference.dir, { recursive: true });
    if (imageDir) await Deno.remove(imageDir, { recursive: true });
  }

  if (results.length > 0) {
    console.log("\n# Summary\n");
    console.log(
      `${"design".padEnd(12)}${"nodes".padStart(6)}${"sent MB".padStart(10)}${
        "x payload".padStart(11)
      }${"seconds".padStart(9)}${"x 1 node".padStart(10)}${"RSS MiB".padStart(9)}`,
    );
    for (const m of results) {
      const one = results.find((r) => r.design === m.design && r.nodes === 1);
      console.log(
        `${m.design.padEnd(12)}${String(m.nodes).padStart(6)}${
          (m.bytes / 1e6).toFixed(1).padStart(10)
        }${(m.payloadBytes ? m.bytes / m.payloadBytes : 0).toFixed(2).padStart(11)}${
          m.seconds.toFixed(1).padStart(9)
        }${(one ? m.seconds / one.seconds : 0).toFixed(2).padStart(10)}${
          m.rssMib.toFixed(0).padStart(9)
        }`,
      );
    }
  }
  if (values.real) await realCluster(rate);
  if (!values["no-codecs"]) await codecs();
  return 0;
}

/**
 * The real test cluster's one node, the client behind the same shaped
 * link: the upload, and an image that holds tcpgadget pulled by the node
 * from a registry beside it (as a cluster's nodes pull from theirs), the
 * first time and once it is on the node.
 */
async function realCluster(rate: number): Promise<void> {
  console.log("\n# The real test cluster, one node\n");
  const path = Deno.env.get("TCPGADGET_E2E_KUBECONFIG");
  const skip = !path
    ? "TCPGADGET_E2E_KUBECONFIG is not set (deno task cluster:up)"
    : registrySkipReason();
  if (skip || !path) {
    console.log(`(skipped: ${skip})`);
    return;
  }
  const kubeconfig = Deno.readTextFileSync(path);
  const url = kubeconfig.match(/server: (https:\/\/[^\s]+)/)![1];
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-bench-real-" });
  const tcpgadget = [Deno.execPath(), "run", "-A", `${REPO}mod.ts`];
  try {
    const api = { kubeconfig, url, port: Number(new URL(url).port), dir };
    const archive = `${dir}/tcpgadget-image.tar`;
    const built = performance.now();
    run([...tcpgadget, "image", "build", "--output", archive]);
    console.log(
      `image build: ${((performance.now() - built) / 1000).toFixed(1)} s, ${
        ((await Deno.stat(archive)).size / 1e6).toFixed(1)
      } MB`,
    );
    await using registry = await Registry.start();
    const image = `${registry.host}/tcpgadget-bench:${crypto.randomUUID().slice(0, 8)}`;
    await registry.push(archive, image.slice(registry.host.length + 1));
    registry.declareTo(testClusterState.registryHosts);
    try {
      for (
        const design of [
          { name: "real-upload", command: tcpgadget },
          { name: "real-image-pull", command: tcpgadget, args: ["--agent-image", image] },
          { name: "real-image-cached", command: tcpgadget, args: ["--agent-image", image] },
        ]
      ) {
        console.log(formatMeasured(await measureThrough(api, design, 1, rate)));
      }
    } finally {
      await forgetImages(testClusterState.containerdSocket, `${registry.host}/`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await main());
