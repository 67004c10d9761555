/**
 * The judge: the sink of an egress run's pipeline (cli/pipeline.ts). Each
 * connect attempt that passes the filter is judged against the policy, with
 * the name the pipeline gave its destination (`dstName`: from this host's
 * DNS answers and hosts files, or from the node that saw it in cluster
 * mode) and its pod's labels, and counted in the ledger.
 *
 * @module
 */

import type { TraceEvent } from "../../core/trace_event.ts";
import type { EgressLedger } from "./egress_ledger.ts";

/** The labels of an event's pod, if known. */
export type LabelsOf = (event: TraceEvent) => Readonly<Record<string, string>> | undefined;

/**
 * The sink that judges every event into `ledger` (only connects are judged).
 *
 * @example
 * ```ts
 * import { judgeInto } from "./judge.ts";
 * import { EgressLedger } from "./egress_ledger.ts";
 * import { loadPolicy } from "./policy.ts";
 * import type { TraceEvent } from "../../core/trace_event.ts";
 * import assert from "node:assert/strict";
 * const ledger = new EgressLedger(loadPolicy([{ kind: "rule", action: "allow", text: "a.test:443" }]));
 * const judge = judgeInto(ledger);
 * const connect = { type: "C", comm: "curl", daddr: "192.0.2.7", dport: 443, node: "", namespace: "", pod: "", container: "" } as TraceEvent;
 * judge({ ...connect, dstName: { name: "a.test", source: "dns" } });
 * judge(connect); // the same address, its name unknown: judged by address rules only
 * assert.deepEqual(ledger.destinations().map((d) => [d.verdict, d.name?.name]), [
 *   ["violation", undefined],
 *   ["allowed", "a.test"],
 * ]);
 * ```
 */
export function judgeInto(
  ledger: EgressLedger,
  labelsOf?: LabelsOf,
): (event: TraceEvent) => void {
  if (!labelsOf) return (event) => void ledger.add(event, event.dstName);
  return (event) => void ledger.add(event, event.dstName, labelsOf(event));
}
