/*
 * A PVH guest written by hand, to test ftvm's loader and boot state
 * independently of the Rust runtime.
 *
 * An ELF64 file whose code is all 32-bit: it never leaves the protected mode
 * the PVH ABI enters it in. It checks that it runs in protected mode with
 * paging off and that EBX points at an hvm_start_info (magic 0x336ec578,
 * version >= 1), prints "PVH hand-made guest OK" and "cmdline: <its command
 * line>" to COM1 with polled output, and exits with status 42 through port
 * 0xf4. A failed check prints "PVH hand-made guest FAILED: <check>" and
 * exits with status 1.
 */

#define CR0_PE          0x00000001
#define CR0_PG          0x80000000
#define START_INFO_MAGIC 0x336ec578
/* Offsets in struct hvm_start_info. */
#define SI_MAGIC        0
#define SI_VERSION      4
#define SI_CMDLINE      24

#include "pvh32.inc"

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    mov $stack_top, %esp

    mov %cr0, %eax
    test $CR0_PE, %eax
    jz not_protected_mode
    test $CR0_PG, %eax
    jnz paging_on

    test %ebx, %ebx
    jz no_start_info
    cmpl $START_INFO_MAGIC, SI_MAGIC(%ebx)
    jne bad_magic
    cmpl $1, SI_VERSION(%ebx)
    jb bad_version
    /* A guest in 32-bit mode can read its command line only below 4 GiB. */
    cmpl $0, SI_CMDLINE+4(%ebx)
    jne cmdline_above_4g

    mov $ok_message, %eax
    call puts
    mov $cmdline_label, %eax
    call puts
    mov SI_CMDLINE(%ebx), %eax
    test %eax, %eax
    jz 1f
    call puts
1:  mov $newline, %eax
    call puts
    mov $42, %al
    out %al, $EXIT_PORT
    jmp halt

not_protected_mode:
    mov $not_protected_mode_message, %ebx
    jmp fail
paging_on:
    mov $paging_on_message, %ebx
    jmp fail
no_start_info:
    mov $no_start_info_message, %ebx
    jmp fail
bad_magic:
    mov $bad_magic_message, %ebx
    jmp fail
bad_version:
    mov $bad_version_message, %ebx
    jmp fail
cmdline_above_4g:
    mov $cmdline_above_4g_message, %ebx
    jmp fail

/* Prints the failure message at EBX and exits with status 1. */
fail:
    mov $fail_message, %eax
    call puts
    mov %ebx, %eax
    call puts
    mov $newline, %eax
    call puts
    mov $1, %al
    out %al, $EXIT_PORT
    jmp halt

    .section .rodata
ok_message:                 .asciz "PVH hand-made guest OK\n"
cmdline_label:              .asciz "cmdline: "
newline:                    .asciz "\n"
fail_message:               .asciz "PVH hand-made guest FAILED: "
not_protected_mode_message: .asciz "CR0.PE is clear: not in protected mode"
paging_on_message:          .asciz "CR0.PG is set: paging is on"
no_start_info_message:      .asciz "EBX is 0: no hvm_start_info"
bad_magic_message:          .asciz "hvm_start_info magic is not 0x336ec578"
bad_version_message:        .asciz "hvm_start_info version is 0"
cmdline_above_4g_message:   .asciz "hvm_start_info command line is above 4 GiB"

    .bss
    .p2align 4
    .skip 4096
stack_top:

    .section .note.GNU-stack, "", @progbits
