/*
 * A PVH guest whose path depends on RDTSC, which no hypervisor can log
 * through the KVM API (docs/DESIGN.md §3): a primary and its backup read
 * different values, so the backup's replay diverges. Each of 2000 rounds
 * reads the TSC, writes to port 0x80 or 0x81 depending on one of its bits,
 * and latches the PIT (a clock read: a logged time sample, so the backup
 * checks its exit signature there). Then it prints "done" and exits with 0.
 */

#include "pvh32.inc"

#define PIT_CHANNEL0    0x40
#define PIT_COMMAND     0x43
#define ROUNDS          2000

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    mov $stack_top, %esp
    mov $ROUNDS, %edi
1:  rdtsc
    test $0x40, %eax
    jz 2f
    out %al, $0x80
    jmp 3f
2:  out %al, $0x81
3:  xor %al, %al
    out %al, $PIT_COMMAND
    in $PIT_CHANNEL0, %al
    in $PIT_CHANNEL0, %al
    dec %edi
    jnz 1b

    mov $done_message, %eax
    call puts
    mov $0, %al
    out %al, $EXIT_PORT
    jmp halt

    .section .rodata
done_message:   .asciz "done\n"

    .bss
    .p2align 4
    .skip 4096
stack_top:

    .section .note.GNU-stack, "", @progbits
