/**
 * The committed BPF object: rebuilt from source it is byte-identical (not
 * stale), and the contract the TypeScript side hard-codes
 * (core/tcptracer_abi.ts: layouts, enums) matches its BTF.
 */

import { objectIsFresh } from "../bpf/build.ts";
import {
  CONFIG_LAYOUT,
  EVENT_KIND,
  EVENT_LAYOUT,
  EVENT_TYPE,
  MNTNS_DECISION,
  TASK_COMM_LEN,
} from "../core/tcptracer_abi.ts";
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
  type_id: number;
  bits_offset: number;
}

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size: number;
  nr_elems?: number;
  members: BtfMember[];
  values: { name: string; val: number }[];
}

let btfTypes: BtfType[] | undefined;

function btf(): BtfType[] {
  if (btfTypes) return btfTypes;
  const output = new Deno.Command("bpftool", { args: ["-j", "btf", "dump", "file", OBJECT] })
    .outputSync();
  ({ types: btfTypes } = JSON.parse(new TextDecoder().decode(output.stdout)));
  return btfTypes!;
}

function btfType(kind: string, name: string): BtfType {
  const found = btf().find((t) => t.kind === kind && t.name === name);
  if (!found) throw new Error(`${kind.toLowerCase()} ${name} not in the object's BTF`);
  return found;
}

/**
 * Byte offsets of every member but padding, as the object's BTF has them:
 * a member added on one side only shows as a difference.
 */
function offsets(name: string): Record<string, number> {
  const struct = btfType("STRUCT", name);
  const result: Record<string, number> = { size: struct.size };
  for (const member of struct.members) {
    if (!member.name.startsWith("pad")) result[member.name] = member.bits_offset / 8;
  }
  return result;
}

/** The values of a C enum, by name. */
function enumValues(name: string): Record<string, number> {
  return Object.fromEntries(btfType("ENUM", name).values.map((v) => [v.name, v.val]));
}

Deno.test({
  name: "bpf object: struct event layout matches the decoder",
  ignore: noBpftool,
  fn() {
    assertEquals(offsets("event"), { ...EVENT_LAYOUT });
    // The command name's array length is the decoder's TASK_COMM_LEN.
    const comm = btfType("STRUCT", "event").members.find((m) => m.name === "comm")!;
    const array = btf().find((t) => t.id === comm.type_id);
    assertEquals(array?.nr_elems, TASK_COMM_LEN);
  },
});

Deno.test({
  name: "bpf object: struct tcptracer_config layout matches the encoder",
  ignore: noBpftool,
  fn() {
    assertEquals(offsets("tcptracer_config"), { ...CONFIG_LAYOUT });
  },
});

Deno.test({
  name: "bpf object: event kinds, type codes and filter decisions match the C enums",
  ignore: noBpftool,
  fn() {
    assertEquals(enumValues("event_kind"), { ...EVENT_KIND });
    assertEquals(enumValues("event_type"), { ...EVENT_TYPE });
    assertEquals(enumValues("mntns_decision"), { ...MNTNS_DECISION });
  },
});
