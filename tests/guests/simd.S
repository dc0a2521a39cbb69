/*
 * A PVH guest that executes an SSE instruction, to test how ftvm reports an
 * instruction its host cannot emulate (KVM's emulator on our hosts fails on
 * SSE arithmetic and logic).
 *
 * In 32-bit protected mode, as entered, it prints "about to run xorps" to
 * COM1, enables SSE (CR4.OSFXSR, with CR0.EM clear and CR0.MP set) and runs
 * `xorps %xmm0,%xmm0`. On a host that can run it, it goes on to print
 * "xorps ran" and exit with status 0 through port 0xf4.
 */

#define CR0_MP          0x00000002
#define CR0_EM          0x00000004
#define CR4_OSFXSR      0x00000200

#include "pvh32.inc"

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    mov $stack_top, %esp

    mov $about_message, %eax
    call puts

    mov %cr0, %eax
    and $~CR0_EM, %eax
    or $CR0_MP, %eax
    mov %eax, %cr0
    mov %cr4, %eax
    or $CR4_OSFXSR, %eax
    mov %eax, %cr4
    xorps %xmm0, %xmm0

    mov $ran_message, %eax
    call puts
    mov $0, %al
    out %al, $EXIT_PORT
    jmp halt

    .section .rodata
about_message:  .asciz "about to run xorps\n"
ran_message:    .asciz "xorps ran\n"

    .bss
    .p2align 4
    .skip 4096
stack_top:

    .section .note.GNU-stack, "", @progbits
