/**
 * Where libbpf is loaded from.
 *
 * @module
 */

/** A library path for dlopen, how to describe it, and what to undo after. */
export interface ResolvedLibrary {
  path: string;
  source: string;
  cleanup: () => void;
}

/** `TCPGADGET_LIBBPF` if set, else the system's libbpf. */
export function resolveLibbpf(): ResolvedLibrary {
  const override = Deno.env.get("TCPGADGET_LIBBPF");
  if (override) return { path: override, source: override, cleanup: () => {} };
  return { path: "libbpf.so.1", source: "system libbpf.so.1", cleanup: () => {} };
}
