/**
 * The libbpf binding: one symbol table (each argument commented with its C
 * type) and its opener. Log capture is in libbpf_log.ts, the turning of C
 * return codes into errors in libbpf_errors.ts.
 *
 * @module
 */

import { errorLine, TcpgadgetError } from "./errors.ts";
import { resolveLibbpf } from "./libbpf_embedded.ts";
import { installLogCapture } from "./libbpf_log.ts";

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
  bpf_program__attach_cgroup: {
    parameters: [
      "pointer", // const struct bpf_program *prog
      "i32", // int cgroup_fd
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
  bpf_map__get_next_key: {
    parameters: [
      "pointer", // const struct bpf_map *map
      "buffer", // const void *cur_key (NULL: the first key)
      "buffer", // void *next_key
      "usize", // size_t key_sz
    ],
    result: "i32", // 0, -ENOENT after the last key
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
 * libbpf_log.ts.
 */
export function openLibbpf(): Libbpf {
  if (opened) return opened;
  const { path, source, cleanup } = resolveLibbpf();
  let library: Deno.DynamicLibrary<typeof symbols>;
  try {
    library = Deno.dlopen(path, symbols);
  } catch (error) {
    throw new TcpgadgetError(
      `cannot load libbpf from ${source}: ${errorLine(error)}`,
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
