/*
 * Stand-ins that let Debian's static libbpf.a and libelf.a go into a shared
 * object. Both archives are built as position-independent *executable* code
 * (-fPIE), which a shared object accepts except in two places:
 *
 * 1. libbpf.o reads `stderr` with a PC-relative load, which only an
 *    executable can satisfy (through a copy relocation). A hidden `stderr`
 *    defined here satisfies it inside the library, pointing at glibc's
 *    standard error stream.
 *
 * 2. libelf's elf_error.o keeps its error number in a local-exec TLS
 *    variable (R_X86_64_TPOFF32), which is only valid in an executable.
 *    build.ts drops that object's code, keeps its message tables (renamed to
 *    __tcpgadget_elf_msgidx/msgstr) and links the three functions below in
 *    its place: the same logic as elfutils' libelf/elf_error.c, with a TLS
 *    variable of the general-dynamic model. build.ts passes the tables'
 *    sizes as ELF_MSGIDX_COUNT and ELF_MSGSTR_SIZE, read from the object.
 *
 * Everything here is hidden: the version script exports only libbpf's API.
 *
 * SPDX-License-Identifier: LGPL-3.0-or-later OR GPL-2.0-or-later (as elfutils' libelf)
 */

#include <assert.h>
#include <libintl.h>
#include <stddef.h>
#include <stdint.h>

#ifndef ELF_MSGIDX_COUNT
#error "ELF_MSGIDX_COUNT not set: build with bpf/libbpf/build.ts"
#endif
#ifndef ELF_MSGSTR_SIZE
#error "ELF_MSGSTR_SIZE not set: build with bpf/libbpf/build.ts"
#endif

#define HIDDEN __attribute__((visibility("hidden")))

/* ---- 1. stderr ---------------------------------------------------------- */

struct _IO_FILE;
/* glibc's standard error FILE, exported since GLIBC_2.2.5; `stderr` starts
 * out pointing at it. Using it, not dlsym("stderr"), keeps the library's
 * glibc requirement where libelf already puts it. */
extern struct _IO_FILE _IO_2_1_stderr_;
HIDDEN struct _IO_FILE *stderr = &_IO_2_1_stderr_;

/* ---- 2. libelf's error state -------------------------------------------- */

#define ELF_E_NOERROR 0
#define ELF_E_UNKNOWN_ERROR 1

/* From elf_error.o: message offsets (uint_fast16_t, 8 bytes on x86_64) and
 * the NUL-separated messages. */
extern const uint_fast16_t __tcpgadget_elf_msgidx[ELF_MSGIDX_COUNT] HIDDEN;
extern const char __tcpgadget_elf_msgstr[ELF_MSGSTR_SIZE] HIDDEN;

static __thread int global_error;

static const char *translate(int index) {
  assert(__tcpgadget_elf_msgidx[index] < ELF_MSGSTR_SIZE);
  return dcgettext("elfutils", __tcpgadget_elf_msgstr + __tcpgadget_elf_msgidx[index],
                   5 /* LC_MESSAGES */);
}

HIDDEN int elf_errno(void) {
  int result = global_error;
  global_error = ELF_E_NOERROR;
  return result;
}

HIDDEN void __libelf_seterrno(int value) {
  global_error = value >= 0 && value < ELF_MSGIDX_COUNT ? value : ELF_E_UNKNOWN_ERROR;
}

HIDDEN const char *elf_errmsg(int error) {
  int last_error = global_error;
  if (error == 0) return last_error != 0 ? translate(last_error) : NULL;
  if (error < -1 || error >= ELF_MSGIDX_COUNT) return translate(ELF_E_UNKNOWN_ERROR);
  return translate(error == -1 ? last_error : error);
}
