/**
 * The libbpf binding on its own: a program the verifier rejects gives one
 * line with libbpf's and the verifier's reason; handles close cleanly.
 */

import { BpfObject } from "../core/object.ts";
import { LibbpfError } from "../core/errors.ts";
import { BPF_OBJECT } from "../core/tracer.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./helpers/assert.ts";
import { hasCommand, needsBpf } from "./helpers/privileges.ts";

const ignore = needsBpf("object_test.ts");
const noClang = !hasCommand("clang");
if (noClang) console.warn("SKIPPED (object_test.ts rejected program): clang not installed");

const REJECTED_PROGRAM = `
#define SEC(name) __attribute__((section(name), used))

SEC("raw_tp/sys_enter")
int null_dereference(unsigned long long *ctx)
{
	/* A raw argument is a plain number to the verifier: not readable. */
	volatile int *pointer = (volatile int *)ctx[0];

	return *pointer;
}

char LICENSE[] SEC("license") = "GPL";
`;

Deno.test({
  name: "object: a program the verifier rejects is one line with the reasons",
  ignore: ignore || noClang,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/bad.bpf.c`, REJECTED_PROGRAM);
      const compiled = await new Deno.Command("clang", {
        args: ["-target", "bpf", "-O2", "-g", "-c", `${dir}/bad.bpf.c`, "-o", `${dir}/bad.bpf.o`],
      }).output();
      assert(compiled.success, new TextDecoder().decode(compiled.stderr));
      const object = BpfObject.open(await Deno.readFile(`${dir}/bad.bpf.o`), "bad");
      try {
        const error = assertThrows(() => object.load(), LibbpfError);
        assertMatch(
          error.message,
          /^loading the BPF object into the kernel: Permission denied \(EACCES\): .*prog 'null_dereference'.*; verifier: .*invalid mem access/,
        );
        assertEquals(error.message.includes("\n"), false);
        assertEquals((error as LibbpfError).errno, 13);
      } finally {
        object.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "object: constants are found by name in the BTF; unknown names are errors",
  ignore,
  fn() {
    using object = BpfObject.open(BPF_OBJECT, "tcptracer");
    assertThrows(
      () => object.setConstant("config", new Uint8Array(3)),
      Error,
      "constant config is 40 bytes, got 3",
    );
    assertThrows(
      () => object.setConstant("no_such_variable", new Uint8Array(4)),
      Error,
      "BPF object has no variable no_such_variable in .rodata",
    );
    assertThrows(() => object.program("missing"), Error, "BPF object has no program missing");
    assertEquals(
      object.programs().map((p) => p.name).sort(),
      [
        "rescue_state_btf",
        "rescue_state_raw",
        "seed_owners",
        "tcp_accept4_exit",
        "tcp_accept_exit",
        "tcp_set_state_btf",
        "tcp_set_state_raw",
        "tree_exit",
        "tree_fork",
        "tree_free",
      ],
    );
    object.close();
    object.close(); // idempotent
  },
});
