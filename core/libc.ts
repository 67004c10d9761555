/**
 * The C library functions tcpgadget calls through FFI: memory mapping of the
 * ring buffer, poll, eventfd, errno, clocks, mount. One symbol table, each
 * argument commented with its C type.
 *
 * @module
 */

const symbols = {
  mmap: {
    parameters: [
      "pointer", // void *addr
      "usize", // size_t length
      "i32", // int prot
      "i32", // int flags
      "i32", // int fd
      "i64", // off_t offset
    ],
    result: "pointer", // void * (MAP_FAILED = (void *)-1)
  },
  munmap: {
    parameters: [
      "pointer", // void *addr
      "usize", // size_t length
    ],
    result: "i32",
  },
  poll: {
    parameters: [
      "buffer", // struct pollfd *fds
      "u64", // nfds_t nfds
      "i32", // int timeout (ms)
    ],
    result: "i32",
  },
  /** poll() on a worker thread, so the event loop keeps running. */
  poll_async: {
    name: "poll",
    parameters: [
      "buffer", // struct pollfd *fds
      "u64", // nfds_t nfds
      "i32", // int timeout (ms)
    ],
    result: "i32",
    nonblocking: true,
  },
  fcntl: {
    parameters: [
      "i32", // int fd
      "i32", // int cmd
      "i32", // int arg (the commands used here take an int)
    ],
    result: "i32",
  },
  eventfd: {
    parameters: [
      "u32", // unsigned int initval
      "i32", // int flags
    ],
    result: "i32",
  },
  write: {
    parameters: [
      "i32", // int fd
      "buffer", // const void *buf
      "usize", // size_t count
    ],
    result: "isize",
  },
  send: {
    parameters: [
      "i32", // int sockfd
      "buffer", // const void *buf
      "usize", // size_t len
      "i32", // int flags
    ],
    result: "isize",
  },
  read: {
    parameters: [
      "i32", // int fd
      "buffer", // void *buf
      "usize", // size_t count
    ],
    result: "isize",
  },
  pthread_sigmask: {
    parameters: [
      "i32", // int how
      "buffer", // const sigset_t *set
      "buffer", // sigset_t *oldset
    ],
    result: "i32",
  },
  close: {
    parameters: [
      "i32", // int fd
    ],
    result: "i32",
  },
  open: {
    parameters: [
      "buffer", // const char *pathname
      "i32", // int flags (no O_CREAT: the variadic mode_t is never passed)
    ],
    result: "i32",
  },
  __errno_location: {
    parameters: [],
    result: "pointer", // int *
  },
  strerror: {
    parameters: [
      "i32", // int errnum
    ],
    result: "pointer", // char *
  },
  vsnprintf: {
    parameters: [
      "buffer", // char *str
      "usize", // size_t size
      "pointer", // const char *format
      "pointer", // va_list ap (a pointer on x86_64 and arm64)
    ],
    result: "i32",
  },
  clock_gettime: {
    parameters: [
      "i32", // clockid_t clockid
      "buffer", // struct timespec *tp
    ],
    result: "i32",
  },
  mount: {
    parameters: [
      "buffer", // const char *source
      "buffer", // const char *target
      "buffer", // const char *filesystemtype
      "u64", // unsigned long mountflags
      "pointer", // const void *data
    ],
    result: "i32",
  },
  /** For system calls glibc has no wrapper for (openat2). */
  syscall: {
    parameters: [
      "i64", // long number
      "i64", // the arguments, as the call takes them
      "buffer",
      "buffer",
      "i64",
    ],
    result: "i64", // -1 with errno set on failure
  },
  pipe2: {
    parameters: [
      "buffer", // int pipefd[2]
      "i32", // int flags
    ],
    result: "i32",
  },
  memfd_create: {
    parameters: [
      "buffer", // const char *name
      "u32", // unsigned int flags
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound C library functions. */
export type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let libc: Libc | undefined;

/** Opens the C library once and returns its bound functions. */
export function openLibc(): Libc {
  libc ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return libc;
}

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
export const O_WRONLY = 1;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_NOCTTY = 0o400;
export const O_PATH = 0o10000000;
export const ENOSYS = 38;
export const POLLIN = 0x1;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const MFD_CLOEXEC = 0x1;
/** Executable memfd, for kernels with vm.memfd_noexec (6.3+); EINVAL before. */
export const MFD_EXEC = 0x10;
export const CLOCK_REALTIME = 0;
export const CLOCK_BOOTTIME = 7;
export const EINTR = 4;
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;

/**
 * Runs `fn` with signals blocked on this thread, restoring the mask after.
 * For long system calls that give up when a signal arrives (the BPF
 * verifier returns EAGAIN), such as a profiler's periodic SIGPROF.
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const libc = openLibc();
  const all = new Uint8Array(128).fill(0xff); // sigset_t
  const previous = new Uint8Array(128);
  const blocked = libc.pthread_sigmask(SIG_BLOCK, all, previous) === 0;
  try {
    return fn();
  } finally {
    if (blocked) libc.pthread_sigmask(SIG_SETMASK, previous, new Uint8Array(128));
  }
}
export const EINVAL = 22;

/** Whether an mmap() result is MAP_FAILED. */
export function mapFailed(pointer: Deno.PointerValue): boolean {
  return pointer === null ||
    Deno.UnsafePointer.value(pointer) === 0xffff_ffff_ffff_ffffn;
}

/**
 * errno of the calling thread. Read it right after the failing call: any
 * libc call in between may overwrite it.
 */
export function errno(): number {
  const location = openLibc().__errno_location();
  return location === null ? 0 : new Deno.UnsafePointerView(location).getInt32();
}

/** The C library's message for an errno value ("Operation not permitted"). */
export function strerror(errnum: number): string {
  const message = openLibc().strerror(errnum);
  return message === null ? `errno ${errnum}` : Deno.UnsafePointerView.getCString(message);
}

/** A NUL-terminated copy of a string, for `const char *` arguments. */
export function cString(value: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${value}\0`);
}

/** Reads a clock as nanoseconds. */
export function clockNs(clock: number): bigint {
  const timespec = new BigInt64Array(2);
  if (openLibc().clock_gettime(clock, timespec) !== 0) {
    throw new Error(`clock_gettime(${clock}): ${strerror(errno())}`);
  }
  return timespec[0] * 1_000_000_000n + timespec[1];
}
