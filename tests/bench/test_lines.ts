/**
 * Lines of tracer output for the benchmark's tests: tcpgadget's JSON and
 * default columns.
 *
 * @module
 */

/** The load generator's pid in the tests. */
export const PID = 4242;

/** A JSON event as tcpgadget writes it (with an undocumented key, too). */
export function jsonLine(
  fields: { pid: number; comm: string; operation: string; sport?: number },
): string {
  return JSON.stringify({
    type: "normal",
    node: "nöde", // multi-byte, to split inside a character
    namespace: "\\u003c\\u003e",
    pod: "<>",
    container: "<>",
    pid: fields.pid,
    comm: fields.comm,
    ipversion: 4,
    saddr: "127.0.0.1",
    daddr: "127.0.0.1",
    sport: fields.sport ?? 40000,
    dport: 5000,
    operation: fields.operation,
    tid: fields.pid + 1,
    uid: 0,
    gid: 0,
    mntns: 4026531832,
    netns: 4026531833,
    containerid: "", // not documented: other keys may come and go
    timestamp: "2026-01-01T00:00:00.000000000Z",
  });
}

/** The header of tcpgadget's default columns. */
export const COLUMNS_HEADER =
  "NODE             NAMESPACE        POD              CONTAINER        " +
  "T PID    COMM             IP  SADDR            DADDR            SPORT   DPORT";

/** A row of tcpgadget's default columns. */
export function columnsRow(t: string, pid: number, comm: string): string {
  return `vm               <>               <>               <>               ${t} ${
    String(pid).padEnd(6)
  } ${comm.padEnd(16)} 4   127.0.0.1        127.0.0.1        40000   5000`;
}
