/**
 * What the Kubernetes policy formats of `egress record` share: targets
 * grouped by the ports they were reached on, and the YAML stream of
 * objects with comments.
 *
 * @module
 */

import type { DestinationRecord } from "./egress_ledger.ts";
import { printable } from "../../core/printable.ts";

/**
 * Groups addresses (CIDRs) by the set of ports they were reached on, in a
 * stable order: `[ports, cidrs]` pairs.
 */
export function byPortSet(portsByTarget: Map<string, Set<number>>): [number[], string[]][] {
  const groups = new Map<string, [number[], string[]]>();
  for (const target of [...portsByTarget.keys()].sort()) {
    const ports = [...portsByTarget.get(target)!].sort((a, b) => a - b);
    const key = ports.join(",");
    let group = groups.get(key);
    if (!group) groups.set(key, group = [ports, []]);
    group[1].push(target);
  }
  return [...groups.values()];
}

/** Joins YAML documents, with a comment on top listing what no policy could select. */
export function withUnselectable(
  docs: string[],
  unselectable: readonly DestinationRecord[],
  kind: string,
): string {
  const head = unselectable.length === 0 ? "" : commentLines([
    `not in any ${kind} (processes outside pods, or pods whose labels are unknown):`,
    ...[
      ...new Set(unselectable.map((d) => {
        const w = d.workload;
        const who = w.pod ? `${w.namespace}/${w.pod}/${w.container}` : w.command;
        return `  ${who} -> ${d.name ? `${d.name.name} ` : ""}${d.address} port ${d.port}`;
      })),
    ],
  ]).split("\n").map((line) => `#${line}`).join("\n") + "\n";
  if (docs.length === 0) return head === "" ? "" : head;
  return head + docs.join("---\n");
}

/** Lines as the text of a YAML comment (escaped). */
export function commentLines(lines: string[]): string {
  return lines.map((line) => ` ${printable(line)}`).join("\n");
}
