/**
 * A BPF object (the compiled ELF) and the kernel objects made from it:
 * programs, maps and links, each with a `close()`.
 *
 * Opening only parses the ELF in user space; {@link BpfObject.load} creates
 * the maps and programs in the kernel; {@link BpfProgram.attach} hooks a
 * program to its tracepoint. Closing the object releases everything it
 * created; a link must be closed (or the process end) to detach.
 *
 * @module
 */

import { type LibbpfSymbols, openLibbpf } from "./libbpf.ts";
import { check, checkPointer, libbpfError } from "./libbpf_errors.ts";
import { clearLibbpfLog } from "./libbpf_log.ts";
import { cString, EINTR, errno, openLibc, withSignalsBlocked } from "./libc.ts";
import { TcpgadgetError } from "./errors.ts";

const BTF_KIND_DATASEC = 15;

/**
 * An opened (and later loaded) BPF object.
 *
 * @example
 * ```ts ignore
 * using object = BpfObject.open(bytes, "tcptracer");
 * object.program("tcp_set_state_raw").autoload = false;
 * object.load();
 * using link = object.program("tcp_set_state_btf").attach();
 * ```
 */
export class BpfObject {
  #lib: LibbpfSymbols;
  #handle: Deno.PointerObject | null;
  #loaded = false;
  // Kept alive for as long as libbpf may read them.
  #bytes: Uint8Array;
  #name: Uint8Array;

  private constructor(
    lib: LibbpfSymbols,
    handle: Deno.PointerObject,
    bytes: Uint8Array,
    name: Uint8Array,
  ) {
    this.#lib = lib;
    this.#handle = handle;
    this.#bytes = bytes;
    this.#name = name;
  }

  /** Parses an ELF object held in memory; nothing is created in the kernel. */
  static open(bytes: Uint8Array, name: string): BpfObject {
    const { symbols: lib } = openLibbpf();
    const objectName = cString(name);
    // struct bpf_object_open_opts { size_t sz; const char *object_name; bool relaxed_maps; }
    // libbpf accepts a shorter struct from older callers; fields beyond sz are defaults.
    const opts = new BigUint64Array(3);
    opts[0] = 24n;
    opts[1] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(objectName)));
    const copy = new Uint8Array(bytes);
    clearLibbpfLog();
    const handle = checkPointer(
      lib.bpf_object__open_mem(copy, BigInt(copy.length), new Uint8Array(opts.buffer)),
      `opening BPF object ${name}`,
    );
    return new BpfObject(lib, handle, copy, objectName);
  }

  #object(): Deno.PointerObject {
    if (this.#handle === null) throw new Error("BPF object is closed");
    return this.#handle;
  }

  /** A program of the object, by its C function name. */
  program(name: string): BpfProgram {
    const pointer = this.#lib.bpf_object__find_program_by_name(this.#object(), cString(name));
    if (pointer === null) throw new Error(`BPF object has no program ${name}`);
    return new BpfProgram(this.#lib, pointer, name);
  }

  /** Every program of the object, in ELF order. */
  programs(): BpfProgram[] {
    const result: BpfProgram[] = [];
    let pointer = this.#lib.bpf_object__next_program(this.#object(), null);
    while (pointer !== null) {
      const name = Deno.UnsafePointerView.getCString(
        checkPointer(this.#lib.bpf_program__name(pointer), "bpf_program__name"),
      );
      result.push(new BpfProgram(this.#lib, pointer, name));
      pointer = this.#lib.bpf_object__next_program(this.#object(), pointer);
    }
    return result;
  }

  /** A map of the object, by name (".rodata" for const volatile globals). */
  map(name: string): BpfMap {
    const pointer = this.#lib.bpf_object__find_map_by_name(this.#object(), cString(name));
    if (pointer === null) throw new Error(`BPF object has no map ${name}`);
    return new BpfMap(this.#lib, pointer, name);
  }

  /**
   * Sets a `const volatile` global before load. Its place in `.rodata` is
   * found by name in the object's BTF, so the caller only knows the C type.
   */
  setConstant(name: string, value: Uint8Array): void {
    if (this.#loaded) throw new Error(`cannot set ${name}: object already loaded`);
    const { offset, size } = this.#findVariable(".rodata", name);
    if (value.length !== size) {
      throw new Error(`constant ${name} is ${size} bytes, got ${value.length}`);
    }
    const rodata = this.map(".rodata");
    const sizeOut = new BigUint64Array(1);
    const data = checkPointer(
      this.#lib.bpf_map__initial_value(rodata.pointer, new Uint8Array(sizeOut.buffer)),
      "bpf_map__initial_value(.rodata)",
    );
    const memory = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(data, Number(sizeOut[0])),
    );
    memory.set(value, offset);
  }

  #findVariable(section: string, name: string): { offset: number; size: number } {
    const btf = checkPointer(this.#lib.bpf_object__btf(this.#object()), "bpf_object__btf");
    const id = this.#lib.btf__find_by_name_kind(btf, cString(section), BTF_KIND_DATASEC);
    if (id < 0) throw new Error(`BPF object has no ${section} section`);
    // struct btf_type { __u32 name_off; __u32 info; __u32 size; } then
    // vlen struct btf_var_secinfo { __u32 type; __u32 offset; __u32 size; }
    const type = new Deno.UnsafePointerView(checkPointer(
      this.#lib.btf__type_by_id(btf, id),
      "btf__type_by_id",
    ));
    const vlen = type.getUint32(4) & 0xffff;
    for (let i = 0; i < vlen; i++) {
      const base = 12 + i * 12;
      const varType = checkPointer(
        this.#lib.btf__type_by_id(btf, type.getUint32(base)),
        "btf__type_by_id",
      );
      const nameOffset = new Deno.UnsafePointerView(varType).getUint32(0);
      const namePointer = this.#lib.btf__name_by_offset(btf, nameOffset);
      if (namePointer && Deno.UnsafePointerView.getCString(namePointer) === name) {
        return { offset: type.getUint32(base + 4), size: type.getUint32(base + 8) };
      }
    }
    throw new Error(`BPF object has no variable ${name} in ${section}`);
  }

  /** Creates the maps and verifies and loads the autoloaded programs. */
  load(): void {
    clearLibbpfLog();
    // Verification takes ~0.1 s and is abandoned (EAGAIN) if a signal arrives.
    const result = withSignalsBlocked(() => this.#lib.bpf_object__load(this.#object()));
    if (result < 0) throw libbpfError("loading the BPF object into the kernel", -result);
    this.#loaded = true;
  }

  /** Releases every kernel object of this object (links are separate). */
  close(): void {
    if (this.#handle === null) return;
    this.#lib.bpf_object__close(this.#handle);
    this.#handle = null;
    void this.#bytes;
    void this.#name;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A part of a {@link BpfObject} (program or map), owned by it. */
abstract class ObjectPart {
  protected readonly lib: LibbpfSymbols;
  readonly pointer: Deno.PointerObject;
  readonly name: string;

  constructor(lib: LibbpfSymbols, pointer: Deno.PointerObject, name: string) {
    this.lib = lib;
    this.pointer = pointer;
    this.name = name;
  }
}

/** A program of a {@link BpfObject}. */
export class BpfProgram extends ObjectPart {
  /** Whether {@link BpfObject.load} loads this program. */
  get autoload(): boolean {
    return this.lib.bpf_program__autoload(this.pointer);
  }

  set autoload(value: boolean) {
    check(this.lib.bpf_program__set_autoload(this.pointer, value), `autoload ${this.name}`);
  }

  /**
   * Times the kernel skipped this program because it was already running on
   * the same CPU (an interrupt nested in it): `recursion_misses` of its info.
   */
  recursionMisses(): bigint {
    const fd = this.lib.bpf_program__fd(this.pointer);
    if (fd < 0) return 0n;
    // struct bpf_prog_info: recursion_misses is the __u64 at offset 208
    // (Linux 5.12+); an older kernel fills less and it stays 0.
    const info = new Uint8Array(232);
    const length = new Uint32Array([info.length]);
    if (this.lib.bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer)) < 0) return 0n;
    if (length[0] < 216) return 0n;
    return new DataView(info.buffer).getBigUint64(208, true);
  }

  /**
   * Runs an iterator program (`SEC("iter/...")`) once over everything it
   * iterates, discarding its output.
   */
  runIterator(): void {
    clearLibbpfLog();
    const link = checkPointer(
      this.lib.bpf_program__attach_iter(this.pointer, null),
      `attaching iterator ${this.name}`,
    );
    try {
      const fd = check(
        this.lib.bpf_iter_create(this.lib.bpf_link__fd(link)),
        `creating iterator ${this.name}`,
      );
      const libc = openLibc();
      const buffer = new Uint8Array(4096);
      try {
        while (true) {
          const read = Number(libc.read(fd, buffer, BigInt(buffer.length)));
          if (read === 0) break;
          if (read < 0) {
            const err = errno();
            if (err === EINTR) continue;
            throw libbpfError(`running iterator ${this.name}`, err);
          }
        }
      } finally {
        libc.close(fd);
      }
    } finally {
      this.lib.bpf_link__destroy(link);
    }
  }

  /**
   * Attaches a cgroup program (`SEC("cgroup_skb/...")`) to the cgroup open
   * as `cgroupFd`, with a link: it runs for that cgroup and every cgroup
   * below, beside programs others attached, until the link is closed. The
   * link holds the cgroup: `cgroupFd` may be closed after.
   */
  attachCgroup(cgroupFd: number): BpfLink {
    clearLibbpfLog();
    const link = this.lib.bpf_program__attach_cgroup(this.pointer, cgroupFd);
    return new BpfLink(this.lib, checkPointer(link, `attaching ${this.name}`), this.name);
  }

  /** Attaches the program where its ELF section says (tracepoint name). */
  attach(): BpfLink {
    clearLibbpfLog();
    const link = this.lib.bpf_program__attach(this.pointer);
    return new BpfLink(this.lib, checkPointer(link, `attaching ${this.name}`), this.name);
  }
}

/** An attachment of a program; closing it detaches the program. */
export class BpfLink {
  #lib: LibbpfSymbols;
  #pointer: Deno.PointerObject | null;
  readonly program: string;

  constructor(lib: LibbpfSymbols, pointer: Deno.PointerObject, program: string) {
    this.#lib = lib;
    this.#pointer = pointer;
    this.program = program;
  }

  /** Detaches. Safe to call twice. */
  close(): void {
    if (this.#pointer === null) return;
    this.#lib.bpf_link__destroy(this.#pointer);
    this.#pointer = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A map of a {@link BpfObject}. Owned by the object: no close of its own. */
export class BpfMap extends ObjectPart {
  /** The map's file descriptor (valid after load). */
  get fd(): number {
    return check(this.lib.bpf_map__fd(this.pointer), `fd of map ${this.name}`);
  }

  get maxEntries(): number {
    return this.lib.bpf_map__max_entries(this.pointer);
  }

  /** Resizes the map; only before load. */
  set maxEntries(value: number) {
    check(
      this.lib.bpf_map__set_max_entries(this.pointer, value),
      `resizing map ${this.name}`,
    );
  }

  /** Reads a value into `value`; false if the key is absent. */
  lookup(key: Uint8Array, value: Uint8Array): boolean {
    const result = this.lib.bpf_map__lookup_elem(
      this.pointer,
      key,
      BigInt(key.length),
      value,
      BigInt(value.length),
      0n,
    );
    if (result === -2 /* ENOENT */) return false;
    check(result, `reading map ${this.name}`);
    return true;
  }

  update(key: Uint8Array, value: Uint8Array): void {
    check(
      this.lib.bpf_map__update_elem(
        this.pointer,
        key,
        BigInt(key.length),
        value,
        BigInt(value.length),
        0n,
      ),
      `updating map ${this.name}`,
    );
  }

  /**
   * Writes the key after `key` (the first key if `key` is null) into
   * `next`; false after the last key.
   */
  nextKey(key: Uint8Array | null, next: Uint8Array): boolean {
    const result = this.lib.bpf_map__get_next_key(this.pointer, key, next, BigInt(next.length));
    if (result === -2 /* ENOENT */) return false;
    check(result, `listing map ${this.name}`);
    return true;
  }

  /** Deletes a key; false if it was absent. */
  delete(key: Uint8Array): boolean {
    const result = this.lib.bpf_map__delete_elem(this.pointer, key, BigInt(key.length), 0n);
    if (result === -2 /* ENOENT */) return false;
    check(result, `deleting from map ${this.name}`);
    return true;
  }
}

/** Number of possible CPUs: the number of values of a per-CPU map entry. */
export function possibleCpus(): number {
  const { symbols } = openLibbpf();
  const count = symbols.libbpf_num_possible_cpus();
  if (count <= 0) throw new TcpgadgetError("cannot read the number of possible CPUs");
  return count;
}

/** What {@link createMap} makes. */
export interface MapSpec {
  /** enum bpf_map_type */
  type: number;
  /** Shown by bpftool; the kernel keeps 15 characters. */
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

/**
 * Creates a map on its own, outside any object (such as the maps that a
 * map of maps refers to), and returns its file descriptor. The caller
 * closes it; the kernel frees the map once no descriptor or map holds it.
 */
export function createMap(spec: MapSpec): number {
  const { symbols } = openLibbpf();
  clearLibbpfLog();
  return check(
    symbols.bpf_map_create(
      spec.type,
      cString(spec.name),
      spec.keySize,
      spec.valueSize,
      spec.maxEntries,
      null,
    ),
    `creating map ${spec.name}`,
  );
}
