/**
 * The client's payload directories: one left by a client killed with
 * SIGKILL is removed by the next run's sweep (and `tcpgadget cleanup`'s);
 * a live client's, a test's own and a recent one without an owner stay.
 */
import { assertEquals } from "./helpers/assert.ts";
import { sweepAbandonedBundleDirs } from "../k8s/api/bundle_dir.ts";

const MODULE = new URL("../k8s/api/bundle_dir.ts", import.meta.url).href;

/** A process that makes a payload directory in `parent`, says where, and waits. */
async function holder(parent: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const { makeBundleDir } = await import(${JSON.stringify(MODULE)});
       console.log((await makeBundleDir()).path);
       await new Promise(() => setInterval(() => {}, 1000));`,
    ],
    env: { TMPDIR: parent },
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) text += (await reader.read()).value ?? "";
  reader.releaseLock();
  return { child, path: text.trim() };
}

Deno.test("bundle dir: a SIGKILLed client's payload directory is swept; a live one, a test's, and fresh ones without owner or lock stay", async () => {
  const parent = await Deno.makeTempDir({ prefix: "tcpgadget-sweep-test-" });
  try {
    const killed = await holder(parent);
    const live = await holder(parent);
    killed.child.kill("SIGKILL");
    await killed.child.status;
    const foreign = `${parent}/tcpgadget-bundle-test-abc`;
    const fresh = `${parent}/tcpgadget-bundle-123456789abcdef`;
    await Deno.mkdir(foreign);
    await Deno.mkdir(fresh);
    const names = () => [...Deno.readDirSync(parent)].map((e) => `${parent}/${e.name}`).sort();
    assertEquals(names(), [killed.path, live.path, foreign, fresh].sort());

    await sweepAbandonedBundleDirs(parent);
    assertEquals(names(), [live.path, foreign, fresh].sort());

    // A staging directory (being locked) stays while it is fresh.
    const staging = `${parent}/tcpgadget-bundle-new-abc123`;
    await Deno.mkdir(staging);
    await Deno.writeTextFile(`${staging}/owner`, "");
    await sweepAbandonedBundleDirs(parent);
    assertEquals(names(), [live.path, foreign, fresh, staging].sort());

    // An owner-less directory from before the lock, and a staging one whose
    // process died, an hour old, go too.
    const hourAgo = new Date(Date.now() - 3600_000);
    await Deno.utime(fresh, hourAgo, hourAgo);
    await Deno.utime(staging, hourAgo, hourAgo);
    await sweepAbandonedBundleDirs(parent);
    assertEquals(names(), [live.path, foreign].sort());

    live.child.kill("SIGTERM");
    await live.child.status;
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("bundle dir: runs started at once never sweep each other's directory", async () => {
  const parent = await Deno.makeTempDir({ prefix: "tcpgadget-sweep-test-" });
  try {
    // Each process makes, fills, checks and removes directories in a loop,
    // and so sweeps the others' at every step of their making.
    const script = `const { makeBundleDir } = await import(${JSON.stringify(MODULE)});
      let lost = 0;
      for (let i = 0; i < 150; i++) {
        const dir = await makeBundleDir();
        try {
          await Deno.writeTextFile(dir.path + "/payload", "x");
          await new Promise((r) => setTimeout(r, 0));
          await Deno.stat(dir.path + "/payload");
        } catch {
          lost++;
        }
        await dir.dispose();
      }
      console.log(lost);`;
    const outputs = await Promise.all(
      [1, 2, 3, 4].map(() =>
        new Deno.Command(Deno.execPath(), {
          args: ["eval", script],
          env: { TMPDIR: parent },
          stdout: "piped",
        }).output()
      ),
    );
    assertEquals(
      outputs.map((output) => [output.code, new TextDecoder().decode(output.stdout).trim()]),
      [[0, "0"], [0, "0"], [0, "0"], [0, "0"]],
    );
    assertEquals([...Deno.readDirSync(parent)], []);
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
