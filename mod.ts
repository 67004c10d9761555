/**
 * tcpgadget: trace TCP connect, accept and close events with eBPF and say
 * which process, container and Kubernetes pod made each one.
 *
 * As a library:
 *
 * ```ts ignore
 * import { TcpTracer } from "./mod.ts";
 *
 * const tracer = TcpTracer.open({ kinds: { connect: true } });
 * setTimeout(() => tracer.stop(), 5000);
 * for await (const event of tracer.events()) {
 *   console.log(event.type, event.pid, event.comm, `${event.daddr}:${event.dport}`);
 * }
 * await tracer.close();
 * ```
 *
 * As a program: `deno run -A mod.ts trace tcp [flags]` (see README.md).
 *
 * @module
 */

export {
  type AttachMethod,
  type EventKinds,
  kindsMask,
  TcpTracer,
  type TracerOptions,
} from "./core/tracer.ts";
export { type EventType, OPERATIONS, type TcpEvent } from "./core/event.ts";
export {
  LibbpfError,
  PermissionError,
  TcpgadgetError,
  UnsupportedError,
  UsageError,
} from "./core/errors.ts";
export { type Endpoint, type Enricher, NodeEnricher, type TraceEvent } from "./core/trace_event.ts";
export { type Formatter, formatterFor } from "./cli/output/formatter.ts";
export { TableFormatter } from "./cli/output/table_formatter.ts";
export { JsonFormatter } from "./cli/output/json_formatter.ts";
export { main } from "./cli/main.ts";

import { main } from "./cli/main.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
