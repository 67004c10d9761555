/**
 * Which BPF programs a process holds, and whether they are gone from the
 * kernel: the check that a tracer leaves nothing attached. Concurrency-safe:
 * it looks at the program ids of one process, not at every program loaded.
 *
 * @module
 */

import { assertEquals } from "./assert.ts";

/** Ids of the BPF programs a process holds file descriptors to (fdinfo `prog_id`). */
export function programIdsHeldBy(pid: number | "self"): number[] {
  const ids = new Set<number>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/fdinfo`)) {
    let info: string;
    try {
      info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
    } catch {
      continue; // closed meanwhile
    }
    const match = info.match(/^prog_id:\s*(\d+)$/m);
    if (match) ids.add(Number(match[1]));
  }
  return [...ids].sort((a, b) => a - b);
}

/** Ids of every BPF program in the kernel. */
export function loadedProgramIds(): Set<number> {
  const output = new Deno.Command("bpftool", { args: ["-j", "prog", "show"], stderr: "null" })
    .outputSync();
  const programs = JSON.parse(new TextDecoder().decode(output.stdout)) as { id: number }[];
  return new Set(programs.map((p) => p.id));
}

/**
 * Asserts that none of `ids` is loaded any more. The kernel frees a
 * program shortly after its last reference goes, so this waits a little.
 */
export async function assertProgramsGone(ids: number[], timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let remaining: number[] = [];
  do {
    const loaded = loadedProgramIds();
    remaining = ids.filter((id) => loaded.has(id));
    if (remaining.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  } while (performance.now() < deadline);
  assertEquals(remaining, [], "BPF programs still loaded after the tracer closed");
}
