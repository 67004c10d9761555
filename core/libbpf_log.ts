/**
 * libbpf's log: its messages are routed here instead of stderr, and the
 * warnings kept so that a failure can be explained in one line (libbpf's own
 * reason and the verifier's last line).
 *
 * @module
 */

import type { LibbpfSymbols } from "./libbpf.ts";
import { openLibc } from "./libc.ts";

// libbpf's messages. WARN-level ones are kept to explain failures; with
// TCPGADGET_DEBUG set, every message is also printed to stderr.
const LOG_LIMIT = 400;
const logLines: string[] = [];
const PRINT_FN = {
  parameters: [
    "i32", // enum libbpf_print_level level
    "pointer", // const char *format
    "pointer", // va_list args
  ],
  result: "i32",
} as const;
// Referenced for the life of the process: libbpf keeps the pointer.
const keepAlive = new Set<Deno.UnsafeCallback<typeof PRINT_FN>>();

export function installLogCapture(lib: LibbpfSymbols): void {
  const debug = Boolean(Deno.env.get("TCPGADGET_DEBUG"));
  const libc = openLibc();
  const buffer = new Uint8Array(16384);
  const callback = new Deno.UnsafeCallback(
    PRINT_FN,
    (level, format, args) => {
      const written = libc.vsnprintf(buffer, BigInt(buffer.length), format, args);
      if (written < 0) return 0;
      const text = new TextDecoder().decode(
        buffer.subarray(0, Math.min(written, buffer.length - 1)),
      );
      if (debug) Deno.stderr.writeSync(new TextEncoder().encode(text));
      if (level === 0) { // LIBBPF_WARN
        logLines.push(...text.trimEnd().split("\n"));
        if (logLines.length > LOG_LIMIT) logLines.splice(0, logLines.length - LOG_LIMIT);
      }
      return written;
    },
  );
  keepAlive.add(callback);
  lib.libbpf_set_print(callback.pointer);
}

/** The warnings libbpf printed since the last {@link clearLibbpfLog}. */
export function libbpfLog(): readonly string[] {
  return logLines;
}

/** Forgets earlier libbpf warnings, before an operation whose log matters. */
export function clearLibbpfLog(): void {
  logLines.length = 0;
}

/**
 * The most telling lines of libbpf's log for a failure: its own
 * "libbpf: ..." reasons and the verifier's last line, joined on one line.
 */
export function libbpfReason(): string {
  const reasons: string[] = [];
  let verifierLast = "";
  let inVerifierLog = false;
  for (const line of logLines) {
    if (line.includes("-- BEGIN PROG LOAD LOG --")) {
      inVerifierLog = true;
      continue;
    }
    if (line.includes("-- END PROG LOAD LOG --")) {
      inVerifierLog = false;
      continue;
    }
    if (inVerifierLog) {
      if (line.trim() && !line.startsWith("processed ")) verifierLast = line.trim();
      continue;
    }
    const reason = line.replace(/^libbpf: /, "").trim();
    if (reason && !reasons.includes(reason)) reasons.push(reason);
  }
  const main = reasons.find((r) => /failed|error|invalid|not supported|cannot/i.test(r)) ??
    reasons.at(-1) ?? "";
  return [main, verifierLast && `verifier: ${verifierLast}`].filter(Boolean).join("; ");
}
