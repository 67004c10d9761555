/**
 * The single binary: `deno task compile` embeds the BPF object and libbpf,
 * and the binary passes the command-line tests.
 *
 * Building needs Deno's `denort` runtime, downloaded by `deno compile` or
 * given as DENORT_BIN. Without it (no internet), the binary cannot run, but
 * its payload can still be checked: it is built with the `deno` binary as
 * a stand-in runtime, and must hold the exact bytes of the BPF object and
 * of libbpf (nothing is read from files next to it at run time).
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { BPF_OBJECT } from "../core/tracer.ts";
import { EMBEDDED_LIBBPF } from "../core/libbpf_embedded.ts";
import { BPF_SKIP_REASON } from "./helpers/privileges.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** Runs the compile task into `dir`; with `runtime`, as DENORT_BIN. */
async function compile(dir: string, runtime?: string): Promise<Deno.CommandOutput> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const args = (config.tasks.compile as string).split(" ").slice(1)
    .map((arg) => arg === "dist/tcpgadget" ? `${dir}/tcpgadget` : arg);
  const env: Record<string, string> = runtime ? { DENORT_BIN: runtime } : {};
  return await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  })
    .output();
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  outer: for (let i = haystack.indexOf(first); i !== -1; i = haystack.indexOf(first, i + 1)) {
    if (i + needle.length > haystack.length) return -1;
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("compile: the binary embeds the BPF object and libbpf", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-compile-" });
  try {
    // Any runtime will do to check the payload: use this deno.
    const result = await compile(dir, Deno.env.get("DENORT_BIN") ?? Deno.execPath());
    assert(result.success, new TextDecoder().decode(result.stderr));
    const binary = await Deno.readFile(`${dir}/tcpgadget`);
    assert(indexOf(binary, BPF_OBJECT) >= 0, "BPF object embedded");
    assert(indexOf(binary, EMBEDDED_LIBBPF) >= 0, "libbpf embedded");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The real binary, built at load time, or why it cannot be built here. */
async function buildRealBinary(): Promise<{ binary?: string; skip?: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "tcpgadget-compile-" });
  const result = await compile(dir, Deno.env.get("DENORT_BIN"));
  if (!result.success) {
    const causes = new TextDecoder().decode(result.stderr)
      .split("\n").map((line) => line.trim()).filter((line) => /^\d+: /.test(line))
      .filter((line) => !line.includes("<unknown>"));
    return {
      dir,
      skip: `deno compile cannot get its runtime (${
        causes.at(-1)?.replace(/^\d+: /, "") ?? "unknown error"
      }); set DENORT_BIN to a denort ${Deno.version.deno} binary`,
    };
  }
  if (BPF_SKIP_REASON) return { dir, skip: BPF_SKIP_REASON };
  return { dir, binary: `${dir}/tcpgadget` };
}

const real = await buildRealBinary();
if (real.skip) console.warn(`SKIPPED (compile_test.ts, running the binary): ${real.skip}`);

Deno.test({
  name: "compile: the compiled binary passes the command-line tests",
  ignore: real.binary === undefined,
  async fn(t) {
    const binary = real.binary!;
    const version = await new Deno.Command(binary, { args: ["version"] }).output();
    assertEquals(version.success, true);
    assert(new TextDecoder().decode(version.stdout).includes("embedded libbpf"));
    await t.step("tests/cli_test.ts against the binary", async () => {
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["test", "-A", "tests/cli_test.ts"],
        cwd: ROOT,
        env: { TCPGADGET_TEST_BINARY: binary },
      }).output();
      assert(run.success, new TextDecoder().decode(run.stdout).slice(-3000));
    });
  },
});

Deno.test("compile: temporary build directory removed", async () => {
  await Deno.remove(real.dir, { recursive: true });
});
