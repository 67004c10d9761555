/**
 * One upload from the client, copies between agents (k8s/api/
 * payload_distribution.ts), against the TEST API SERVER: its pods are real
 * processes here, in mount namespaces of their own (each its own /tmp),
 * with loopback pod IPs, so that the copy scripts really run (sh, gzip,
 * perl) and really copy from pod to pod. The payload is random bytes (no
 * BPF needed): what each pod holds is checked byte for byte by SHA-256,
 * and what the client sent is counted.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { clusterSkipReason, FakeCluster } from "./helpers/cluster.ts";
import { gzipFile } from "../core/gzip_file.ts";
import { execInPod, type ExecTarget } from "../k8s/api/exec.ts";
import { loadKubeconfig } from "../k8s/api/kubeconfig.ts";
import { type CopyTarget, PayloadDistribution } from "../k8s/api/payload_distribution.ts";
import { type Payload, sha256File } from "../k8s/api/self_copy.ts";

const FILE = "tests/payload_distribution_test.ts";
const SKIP = clusterSkipReason();
if (SKIP) console.warn(`SKIPPED (${FILE}): ${SKIP}`);

function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: SKIP !== undefined, sanitizeOps: false, sanitizeResources: false, fn });
}

/** A payload of one file of `megabytes` random bytes, packed. */
async function randomPayload(megabytes: number): Promise<Payload & { dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-test-distribution-" });
  const path = `${dir}/deno`;
  const file = await Deno.open(path, { write: true, create: true });
  for (let i = 0; i < megabytes; i++) {
    // Half random, half zeros: gzip really has something to pack.
    const chunk = new Uint8Array(1 << 20);
    for (let off = 0; off < chunk.length / 2; off += 65536) {
      crypto.getRandomValues(chunk.subarray(off, off + 65536));
    }
    await file.write(chunk);
  }
  file.close();
  const packed = await gzipFile(path, `${path}.gz`);
  return {
    dir,
    files: [{
      name: "deno",
      path,
      size: megabytes << 20,
      sha256: await sha256File(path),
      packed: { path: `${path}.gz`, size: packed },
    }],
    command: (args) => ["/tmp/tcpgadget/deno", ...args],
    dispose: () => Deno.remove(dir, { recursive: true }),
  };
}

/** What a distribution said, line by line, and the bytes this machine sent at most per node. */
function recorder() {
  const lines: string[] = [];
  const fromClient = new Map<string, number>();
  return {
    lines,
    fromClient,
    events: {
      progress(node: string, from: string, done: number) {
        if (from === "this machine") {
          fromClient.set(node, Math.max(fromClient.get(node) ?? 0, done));
        }
      },
      copied: (node: string, message: string) =>
        lines.push(
          `node ${node}: ${
            message.replace(/\d+\.\d MB/g, "N MB").replace(/in \d+\.\d s/, "in T s")
          }`,
        ),
      warn: (node: string, message: string) => lines.push(`node ${node}: ${message}`),
      notice: (message: string) => lines.push(message),
    },
  };
}

/** Agent-like pods (sleeping), one per node, running; their copy targets. */
async function pods(cluster: FakeCluster, nodes: string[]): Promise<CopyTarget[]> {
  const kubeconfig = loadKubeconfig({ kubeconfig: cluster.kubeconfig });
  return await Promise.all(nodes.map(async (node) => {
    const pod = await cluster.workload("default", `tg-dist-${node}`, { node, container: "agent" });
    return {
      node,
      exec: { kubeconfig, namespace: "default", pod: pod.metadata!.name!, container: "agent" },
      podIP: pod.status?.podIP,
    };
  }));
}

async function inPod(target: ExecTarget, command: string[]): Promise<string> {
  let out = "";
  const { exitCode } = await execInPod(target, command, {
    onStdout: (chunk) => out += new TextDecoder().decode(chunk),
  });
  assertEquals(exitCode, 0, `${command.join(" ")} in ${target.pod}`);
  return out;
}

/** Each pod holds exactly the payload's file, under its final name, and nothing else. */
async function assertDelivered(targets: CopyTarget[], payload: Payload): Promise<void> {
  const [file] = payload.files;
  for (const target of targets) {
    assertEquals(
      await inPod(target.exec, ["sh", "-c", "cd /tmp/tcpgadget && ls -A && sha256sum deno"]),
      `deno\n${file.sha256}  deno\n`,
      `node ${target.node}`,
    );
  }
}

/** No copy program (fetch, server, unpack) left in any pod, no exec session open. */
async function assertQuiet(cluster: FakeCluster): Promise<void> {
  for (let i = 0; i < 50 && cluster.api.activeExecs > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const running = () =>
    cluster.api.allPodProcesses().map((pid) => {
      try {
        return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ").slice(0, 100);
      } catch {
        return "";
      }
    }).join("\n");
  assertEquals(cluster.api.activeExecs, 0, `no exec session is open; running:\n${running()}`);
  const copiers = cluster.api.allPodProcesses().filter((pid) => {
    try {
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      return argv[0] === "perl" || argv.includes("sh") && argv.some((a) => a.includes("part="));
    } catch {
      return false;
    }
  });
  assertEquals(copiers, [], "no copy program runs on");
}

test("payload distribution (test API server, 6 nodes, 2 at a time): one upload from the client, every other node copies from an agent, each copy checked", async () => {
  await using cluster = await FakeCluster.start({
    nodes: ["a", "b", "c", "d", "e", "f"].map((n) => ({ name: `node-${n}` })),
  });
  const payload = await randomPayload(16);
  try {
    const targets = await pods(cluster, [
      "node-a",
      "node-b",
      "node-c",
      "node-d",
      "node-e",
      "node-f",
    ]);
    const record = recorder();
    const copies = new PayloadDistribution(payload, { parallel: 2, events: record.events });
    const signal = new AbortController().signal;
    await Promise.all(targets.map((target) => copies.deliver(target, signal)));
    await copies.close();
    // The client sent one packed copy, to one node.
    assertEquals([...record.fromClient.values()], [payload.files[0].packed.size]);
    const uploaded = record.lines.filter((line) => / uploaded N MB /.test(line));
    assertEquals(uploaded.length, 1, record.lines.join("\n"));
    const copied = record.lines.filter((line) => / copied N MB from node node-\w /.test(line));
    assertEquals(copied.length, 5, record.lines.join("\n"));
    assertEquals(record.lines.length, 6, record.lines.join("\n"));
    await assertDelivered(targets, payload);
    await assertQuiet(cluster);
  } finally {
    await payload.dispose();
  }
});

test("payload distribution (test API server): the seed's upload cut while a node copies from it: the seed gets it again, the other node too, both checked", async () => {
  await using cluster = await FakeCluster.start();
  const payload = await randomPayload(48);
  try {
    const [seed, peer] = await pods(cluster, ["node-a", "node-b"]);
    // The first exec, the seed's upload, is cut 3/4 in; the other node copies
    // from the seed's file as it arrives (its server, then its fetch are
    // opened meanwhile).
    cluster.api.dropExecStreams(1, {
      afterStdinBytes: Math.floor(payload.files[0].packed.size * 3 / 4),
    });
    const record = recorder();
    let peerStarted = false;
    const copies = new PayloadDistribution(payload, {
      parallel: 4,
      events: {
        ...record.events,
        progress(node, from, done, total) {
          if (node === peer.node && done > 0) peerStarted = true;
          record.events.progress(node, from, done);
          void total;
        },
      },
    });
    const signal = new AbortController().signal;
    const seeded = copies.deliver(seed, signal);
    await Promise.all([seeded, copies.deliver(peer, signal)]);
    await copies.close();
    assert(peerStarted, "the other node copied bytes from the seed before the cut");
    assertEquals(
      record.lines.filter((line) => line.includes("interrupted")),
      [
        "node node-a: upload interrupted (exec stream to pod default/tg-dist-node-a ended without an exit status); retrying (1/3)",
      ],
    );
    assert(
      record.lines.some((line) => line.startsWith("node node-a: uploaded N MB")),
      record.lines.join("\n"),
    );
    assertEquals(
      record.lines.filter((line) =>
        line.startsWith("node node-b: ") && / (copied|uploaded) /.test(line)
      )
        .length,
      1,
      record.lines.join("\n"),
    );
    await assertDelivered([seed, peer], payload);
    await assertQuiet(cluster);
  } finally {
    await payload.dispose();
  }
});

test("payload distribution (test API server): a copy damaged at its source is refused by SHA-256, and the node gets the client's upload instead", async () => {
  await using cluster = await FakeCluster.start();
  const payload = await randomPayload(4);
  try {
    const [seed, peer] = await pods(cluster, ["node-a", "node-b"]);
    const record = recorder();
    const copies = new PayloadDistribution(payload, { parallel: 4, events: record.events });
    const signal = new AbortController().signal;
    await copies.deliver(seed, signal);
    // Its checked copy is changed afterwards (a bad disk, a tampering pod):
    // the bytes the peer gets are not the client's.
    await inPod(seed.exec, [
      "sh",
      "-c",
      "printf X | dd of=/tmp/tcpgadget/deno bs=1 seek=1000 conv=notrunc status=none",
    ]);
    const damaged = await inPod(seed.exec, ["sha256sum", "/tmp/tcpgadget/deno"]);
    await copies.deliver(peer, signal);
    await copies.close();
    assertEquals(record.lines, [
      "node node-a: uploaded N MB (N MB unpacked) in T s (size and SHA-256 verified)",
      `node node-b: copy from node node-a failed (deno: damaged: sha256 ${
        damaged.split(" ")[0]
      }, expected ${payload.files[0].sha256}); copying again`,
      "node node-b: uploaded N MB (N MB unpacked) in T s (size and SHA-256 verified)",
    ]);
    await assertDelivered([peer], payload);
    await assertQuiet(cluster);
  } finally {
    await payload.dispose();
  }
});

test("payload distribution (test API server): a seed that cannot serve (its server cannot listen) does not sink the run: the other nodes get the client's upload", async () => {
  await using cluster = await FakeCluster.start({
    nodes: ["a", "b", "c"].map((n) => ({ name: `node-${n}` })),
  });
  const payload = await randomPayload(4);
  try {
    const [seed, ...others] = await pods(cluster, ["node-a", "node-b", "node-c"]);
    // An address of no interface here (TEST-NET-1): its server cannot listen there.
    const broken = { ...seed, podIP: "192.0.2.1" };
    const record = recorder();
    const copies = new PayloadDistribution(payload, { parallel: 4, events: record.events });
    const signal = new AbortController().signal;
    const seeded = copies.deliver(broken, signal);
    await Promise.all([seeded, ...others.map((target) => copies.deliver(target, signal))]);
    await copies.close();
    // Nothing comes from node-a but its own upload; the others get the
    // client's upload, or a copy from another node that has it.
    const lines = record.lines.sort();
    assertEquals(lines.length, 3, lines.join("\n"));
    assertEquals(
      lines[0],
      "node node-a: uploaded N MB (N MB unpacked) in T s (size and SHA-256 verified)",
    );
    for (const [i, line] of lines.slice(1).entries()) {
      assert(
        [
          `node node-${"bc"[i]}: uploaded N MB (N MB unpacked) in T s (size and SHA-256 verified)`,
          `node node-${"bc"[i]}: copied N MB from node node-${
            "cb"[i]
          } in T s (size and SHA-256 verified)`,
        ].includes(line),
        lines.join("\n"),
      );
    }
    await assertDelivered([seed, ...others], payload);
    await assertQuiet(cluster);
  } finally {
    await payload.dispose();
  }
});
