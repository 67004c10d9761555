/**
 * The committed BPF object: rebuilt from source it is byte-identical (not
 * stale), and the contract the TypeScript side hard-codes
 * (core/tcptracer_abi.ts: layouts, enums) matches its BTF.
 */

import { objectIsFresh, OBJECTS } from "../bpf/build.ts";
import {
  CONFIG_LAYOUT,
  EVENT_KIND,
  EVENT_LAYOUT,
  EVENT_TYPE,
  MNTNS_DECISION,
  TASK_COMM_LEN,
  TREE_MEMBER_LAYOUT,
} from "../core/tcptracer_abi.ts";
import { DNS_COUNTER, DNS_EVENT_LAYOUT, DNS_LIMITS } from "../core/dnssnoop_abi.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { hasCommand } from "./helpers/privileges.ts";

const OBJECT = new URL("../bpf/tcptracer.bpf.o", import.meta.url).pathname;
const DNS_OBJECT = new URL("../bpf/dnssnoop.bpf.o", import.meta.url).pathname;

const noClang = !hasCommand("clang") || !hasCommand("llvm-strip");
if (noClang) console.warn("SKIPPED (bpf_object_test.ts staleness): clang/llvm-strip not installed");
const noBpftool = !hasCommand("bpftool", "version");
if (noBpftool) console.warn("SKIPPED (bpf_object_test.ts layouts): bpftool not installed");

for (const build of OBJECTS) {
  Deno.test({
    name: `bpf object: bpf/${build.object} is what bpf/${build.source} compiles to`,
    ignore: noClang,
    async fn() {
      assert(
        await objectIsFresh(build),
        `bpf/${build.object} is stale: run 'deno task build:bpf' and commit it`,
      );
    },
  });
}

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

const btfTypes = new Map<string, BtfType[]>();

function btf(object = OBJECT): BtfType[] {
  let types = btfTypes.get(object);
  if (types) return types;
  const output = new Deno.Command("bpftool", { args: ["-j", "btf", "dump", "file", object] })
    .outputSync();
  ({ types } = JSON.parse(new TextDecoder().decode(output.stdout)));
  btfTypes.set(object, types!);
  return types!;
}

function btfType(kind: string, name: string, object = OBJECT): BtfType {
  const found = btf(object).find((t) => t.kind === kind && t.name === name);
  if (!found) throw new Error(`${kind.toLowerCase()} ${name} not in the object's BTF`);
  return found;
}

/**
 * Byte offsets of every member but padding, as the object's BTF has them:
 * a member added on one side only shows as a difference.
 */
function offsets(name: string, object = OBJECT): Record<string, number> {
  const struct = btfType("STRUCT", name, object);
  const result: Record<string, number> = { size: struct.size };
  for (const member of struct.members) {
    if (!member.name.startsWith("pad")) result[member.name] = member.bits_offset / 8;
  }
  return result;
}

/** The values of a C enum, by name. */
function enumValues(name: string, object = OBJECT): Record<string, number> {
  return Object.fromEntries(btfType("ENUM", name, object).values.map((v) => [v.name, v.val]));
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

Deno.test({
  name: "bpf object: struct tree_member layout matches the process tree's reader",
  ignore: noBpftool,
  fn() {
    assertEquals(offsets("tree_member"), { ...TREE_MEMBER_LAYOUT });
  },
});

Deno.test({
  name: "bpf object: dnssnoop's struct dns_event, limits and counters match core/dnssnoop_abi.ts",
  ignore: noBpftool,
  fn() {
    assertEquals(offsets("dns_event", DNS_OBJECT), { ...DNS_EVENT_LAYOUT });
    assertEquals(enumValues("dns_limits", DNS_OBJECT), { ...DNS_LIMITS });
    assertEquals(enumValues("dns_counter", DNS_OBJECT), { ...DNS_COUNTER });
  },
});
