/**
 * The committed BPF object: rebuilt from source it is byte-identical (not
 * stale), and the layouts the TypeScript side hard-codes match its BTF.
 */

import { objectIsFresh } from "../bpf/build.ts";
import { EVENT_LAYOUT } from "../core/event.ts";
import { CONFIG_LAYOUT } from "../core/tracer.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { hasCommand } from "./helpers/privileges.ts";

const OBJECT = new URL("../bpf/tcptracer.bpf.o", import.meta.url).pathname;

const noClang = !hasCommand("clang") || !hasCommand("llvm-strip");
if (noClang) console.warn("SKIPPED (bpf_object_test.ts staleness): clang/llvm-strip not installed");
const noBpftool = !hasCommand("bpftool", "version");
if (noBpftool) console.warn("SKIPPED (bpf_object_test.ts layouts): bpftool not installed");

Deno.test({
  name: "bpf object: bpf/tcptracer.bpf.o is what bpf/tcptracer.bpf.c compiles to",
  ignore: noClang,
  async fn() {
    assert(
      await objectIsFresh(),
      "bpf/tcptracer.bpf.o is stale: run 'deno task build:bpf' and commit it",
    );
  },
});

interface BtfMember {
  name: string;
  bits_offset: number;
}

function btfStruct(name: string): { size: number; members: BtfMember[] } {
  const output = new Deno.Command("bpftool", { args: ["-j", "btf", "dump", "file", OBJECT] })
    .outputSync();
  const { types } = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    types: { kind: string; name: string; size: number; members: BtfMember[] }[];
  };
  const found = types.find((t) => t.kind === "STRUCT" && t.name === name);
  if (!found) throw new Error(`struct ${name} not in the object's BTF`);
  return found;
}

/** Byte offsets of the named members, as the object's BTF has them. */
function offsets(name: string, fields: string[]): Record<string, number> {
  const struct = btfStruct(name);
  const result: Record<string, number> = { size: struct.size };
  for (const field of fields) {
    const member = struct.members.find((m) => m.name === field);
    if (!member) throw new Error(`struct ${name} has no member ${field}`);
    result[field] = member.bits_offset / 8;
  }
  return result;
}

Deno.test({
  name: "bpf object: struct event layout matches the decoder",
  ignore: noBpftool,
  fn() {
    const { size: _, ...fields } = EVENT_LAYOUT;
    assertEquals(offsets("event", Object.keys(fields)), { ...EVENT_LAYOUT });
  },
});

Deno.test({
  name: "bpf object: struct tcptracer_config layout matches the encoder",
  ignore: noBpftool,
  fn() {
    const { size: _, ...fields } = CONFIG_LAYOUT;
    assertEquals(offsets("tcptracer_config", Object.keys(fields)), { ...CONFIG_LAYOUT });
  },
});
