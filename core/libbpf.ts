/**
 * The libbpf binding: one symbol table (each argument commented with its C
 * type), the loader of the shared library, libbpf's log capture, and the
 * helpers that turn C return codes into {@link LibbpfError}s.
 *
 * libbpf 1.x returns `-errno` from functions that return an int, and NULL
 * with errno set from functions that return a pointer.
 *
 * @module
 */

import { LibbpfError, TcpgadgetError } from "./errors.ts";
import { errno, openLibc, strerror } from "./libc.ts";
import { errnoName } from "./errno.ts";
import { resolveLibbpf } from "./libbpf_embedded.ts";

const symbols = {
  libbpf_major_version: { parameters: [], result: "u32" },
  libbpf_minor_version: { parameters: [], result: "u32" },
  libbpf_version_string: { parameters: [], result: "pointer" }, // const char *
  libbpf_set_print: {
    parameters: [
      "function", // libbpf_print_fn_t fn
    ],
    result: "pointer", // libbpf_print_fn_t (the previous one)
  },
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
  libbpf_probe_bpf_map_type: {
    parameters: [
      "u32", // enum bpf_map_type map_type
      "pointer", // const void *opts (must be NULL)
    ],
    result: "i32", // 1 supported, 0 not, <0 error
  },
  bpf_object__open_mem: {
    parameters: [
      "buffer", // const void *obj_buf
      "usize", // size_t obj_buf_sz
      "buffer", // const struct bpf_object_open_opts *opts
    ],
    result: "pointer", // struct bpf_object *
  },
  bpf_object__load: {
    parameters: [
      "pointer", // struct bpf_object *obj
    ],
    result: "i32",
  },
  bpf_object__close: {
    parameters: [
      "pointer", // struct bpf_object *obj
    ],
    result: "void",
  },
  bpf_object__btf: {
    parameters: [
      "pointer", // const struct bpf_object *obj
    ],
    result: "pointer", // struct btf *
  },
  bpf_object__find_program_by_name: {
    parameters: [
      "pointer", // const struct bpf_object *obj
      "buffer", // const char *name
    ],
    result: "pointer", // struct bpf_program *
  },
  bpf_object__next_program: {
    parameters: [
      "pointer", // const struct bpf_object *obj
      "pointer", // struct bpf_program *prog (NULL: first)
    ],
    result: "pointer", // struct bpf_program *
  },
  bpf_object__find_map_by_name: {
    parameters: [
      "pointer", // const struct bpf_object *obj
      "buffer", // const char *name
    ],
    result: "pointer", // struct bpf_map *
  },
  bpf_program__name: {
    parameters: [
      "pointer", // const struct bpf_program *prog
    ],
    result: "pointer", // const char *
  },
  bpf_program__autoload: {
    parameters: [
      "pointer", // const struct bpf_program *prog
    ],
    result: "bool",
  },
  bpf_program__set_autoload: {
    parameters: [
      "pointer", // struct bpf_program *prog
      "bool", // bool autoload
    ],
    result: "i32",
  },
  bpf_program__attach: {
    parameters: [
      "pointer", // const struct bpf_program *prog
    ],
    result: "pointer", // struct bpf_link *
  },
  bpf_program__fd: {
    parameters: [
      "pointer", // const struct bpf_program *prog
    ],
    result: "i32",
  },
  bpf_obj_get_info_by_fd: {
    parameters: [
      "i32", // int bpf_fd
      "buffer", // void *info
      "buffer", // __u32 *info_len
    ],
    result: "i32",
  },
  bpf_program__attach_iter: {
    parameters: [
      "pointer", // const struct bpf_program *prog
      "pointer", // const struct bpf_iter_attach_opts *opts (NULL: defaults)
    ],
    result: "pointer", // struct bpf_link *
  },
  bpf_link__fd: {
    parameters: [
      "pointer", // const struct bpf_link *link
    ],
    result: "i32",
  },
  bpf_iter_create: {
    parameters: [
      "i32", // int link_fd
    ],
    result: "i32", // int fd, or -errno
  },
  bpf_link__destroy: {
    parameters: [
      "pointer", // struct bpf_link *link
    ],
    result: "i32",
  },
  bpf_map_create: {
    parameters: [
      "u32", // enum bpf_map_type map_type
      "buffer", // const char *map_name
      "u32", // __u32 key_size
      "u32", // __u32 value_size
      "u32", // __u32 max_entries
      "pointer", // const struct bpf_map_create_opts *opts (NULL)
    ],
    result: "i32", // a file descriptor, or -errno
  },
  bpf_map__fd: {
    parameters: [
      "pointer", // const struct bpf_map *map
    ],
    result: "i32",
  },
  bpf_map__set_max_entries: {
    parameters: [
      "pointer", // struct bpf_map *map
      "u32", // __u32 max_entries
    ],
    result: "i32",
  },
  bpf_map__max_entries: {
    parameters: [
      "pointer", // const struct bpf_map *map
    ],
    result: "u32",
  },
  bpf_map__initial_value: {
    parameters: [
      "pointer", // struct bpf_map *map
      "buffer", // size_t *psize
    ],
    result: "pointer", // const void *
  },
  bpf_map__lookup_elem: {
    parameters: [
      "pointer", // const struct bpf_map *map
      "buffer", // const void *key
      "usize", // size_t key_sz
      "buffer", // void *value
      "usize", // size_t value_sz
      "u64", // __u64 flags
    ],
    result: "i32",
  },
  bpf_map__update_elem: {
    parameters: [
      "pointer", // const struct bpf_map *map
      "buffer", // const void *key
      "usize", // size_t key_sz
      "buffer", // const void *value
      "usize", // size_t value_sz
      "u64", // __u64 flags
    ],
    result: "i32",
  },
  bpf_map__delete_elem: {
    parameters: [
      "pointer", // const struct bpf_map *map
      "buffer", // const void *key
      "usize", // size_t key_sz
      "u64", // __u64 flags
    ],
    result: "i32",
  },
  btf__find_by_name_kind: {
    parameters: [
      "pointer", // const struct btf *btf
      "buffer", // const char *type_name
      "u32", // __u32 kind
    ],
    result: "i32", // __s32 type id, <0 error
  },
  btf__type_by_id: {
    parameters: [
      "pointer", // const struct btf *btf
      "u32", // __u32 id
    ],
    result: "pointer", // const struct btf_type *
  },
  btf__name_by_offset: {
    parameters: [
      "pointer", // const struct btf *btf
      "u32", // __u32 offset
    ],
    result: "pointer", // const char *
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound libbpf functions. */
export type LibbpfSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

/** An opened libbpf and where it came from. */
export interface Libbpf {
  readonly symbols: LibbpfSymbols;
  /** "1.1.2" */
  readonly version: string;
  /** How the library was found, e.g. "embedded (memfd)" or a path. */
  readonly source: string;
}

let opened: Libbpf | undefined;

/**
 * Opens libbpf once: the copy embedded in tcpgadget unless
 * `TCPGADGET_LIBBPF` names another one, and routes its log into
 * {@link libbpfLog}.
 */
export function openLibbpf(): Libbpf {
  if (opened) return opened;
  const { path, source, cleanup } = resolveLibbpf();
  let library: Deno.DynamicLibrary<typeof symbols>;
  try {
    library = Deno.dlopen(path, symbols);
  } catch (error) {
    throw new TcpgadgetError(
      `cannot load libbpf from ${source}: ${firstLine(error)}`,
      { cause: error },
    );
  } finally {
    cleanup();
  }
  const lib = library.symbols;
  const versionPointer = lib.libbpf_version_string();
  const version = versionPointer === null
    ? `${lib.libbpf_major_version()}.${lib.libbpf_minor_version()}`
    : Deno.UnsafePointerView.getCString(versionPointer).replace(/^v/, "");
  installLogCapture(lib);
  opened = { symbols: lib, version, source };
  return opened;
}

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

function installLogCapture(lib: LibbpfSymbols): void {
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

function describeErrno(err: number): string {
  return `${strerror(err)} (${errnoName(err)})`;
}

/** A LibbpfError for a failed call, with libbpf's own reason if it gave one. */
export function libbpfError(what: string, err: number): LibbpfError {
  const reason = libbpfReason();
  return new LibbpfError(
    `${what}: ${describeErrno(err)}${reason ? `: ${reason}` : ""}`,
    err,
  );
}

/** Throws a {@link LibbpfError} if a libbpf int result is negative. */
export function check(result: number, what: string): number {
  if (result < 0) throw libbpfError(what, -result);
  return result;
}

/** Throws a {@link LibbpfError} (with errno) if a libbpf pointer result is NULL. */
export function checkPointer(
  pointer: Deno.PointerValue,
  what: string,
): Deno.PointerObject {
  if (pointer === null) throw libbpfError(what, errno() || 22 /* EINVAL */);
  return pointer;
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}
