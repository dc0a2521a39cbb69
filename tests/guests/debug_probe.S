/*
 * A guest for vmm/examples/debug_probe.rs, which measures how this host's
 * KVM debugs a guest: whether data breakpoints (DR0-3 with R/W bits) fire,
 * and what single-stepping does at each kind of platform exit.
 *
 * It writes and reads a watched word at 0x200000, then makes one exit of
 * each kind (port read and write, MMIO read and write, RDMSR and WRMSR of
 * the TSC, HLT with interrupts off) and exits with status 0.
 */

#define WATCHED 0x200000
#define MMIO    0xd0000000

#include "pvh32.inc"

    .text
    .code32
    .globl _start
_start:
    cli
    mov $stack_top, %esp
    movl $0x1234, WATCHED
    mov WATCHED, %ebx
    mov $0x61, %dx
    in %dx, %al
    nop
    out %al, $0x80
    nop
    mov MMIO, %eax
    nop
    movl $1, MMIO
    nop
    mov $0x10, %ecx
    rdmsr
    nop
    wrmsr
    nop
    hlt
    nop
    mov $0, %al
    out %al, $EXIT_PORT
    jmp halt

    .bss
    .p2align 4
    .skip 4096
stack_top:

    .section .note.GNU-stack, "", @progbits
