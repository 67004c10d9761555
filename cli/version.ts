/**
 * `tcpgadget version`: what is running, for bug reports.
 *
 * @module
 */

import config from "../deno.json" with { type: "json" };
import { BPF_OBJECT } from "../core/tracer.ts";
import { openLibbpf } from "../core/libbpf.ts";
import { createHash } from "node:crypto";

/** The tool's version, from deno.json. */
export const VERSION: string = config.version;

/** SHA-256 of the embedded BPF object, hex. */
export function bpfObjectHash(): string {
  return createHash("sha256").update(BPF_OBJECT).digest("hex");
}

/** Lines of `tcpgadget version`. */
export function versionReport(): string {
  let libbpf: string;
  try {
    const lib = openLibbpf();
    libbpf = `${lib.version} (${lib.source})`;
  } catch (error) {
    libbpf = `unavailable: ${error instanceof Error ? error.message : String(error)}`;
  }
  return [
    `tcpgadget ${VERSION}`,
    `deno ${Deno.version.deno} (${Deno.build.target})`,
    `libbpf ${libbpf}`,
    `bpf object sha256:${bpfObjectHash()}`,
  ].join("\n");
}
