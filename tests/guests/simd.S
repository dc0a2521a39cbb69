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

#define COM1            0x3f8
#define COM1_LSR        (COM1 + 5)
#define LSR_THR_EMPTY   0x20
#define EXIT_PORT       0xf4
#define CR0_MP          0x00000002
#define CR0_EM          0x00000004
#define CR4_OSFXSR      0x00000200

    /* XEN_ELFNOTE_PHYS32_ENTRY (18) naming the 32-bit entry point. */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz */
    .long 18                /* type */
    .asciz "Xen"
    .p2align 2
    .long _start
    .p2align 2

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
halt:
    cli
    hlt
    jmp halt

/* Writes the NUL-terminated string at EAX to COM1, waiting for an empty
 * transmit holding register before each byte. Clobbers EAX, ECX, EDX. */
puts:
    push %esi
    mov %eax, %esi
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %cl
    mov $COM1_LSR, %dx
2:  in %dx, %al
    test $LSR_THR_EMPTY, %al
    jz 2b
    mov %cl, %al
    mov $COM1, %dx
    out %al, %dx
    jmp 1b
3:  pop %esi
    ret

    .section .rodata
about_message:  .asciz "about to run xorps\n"
ran_message:    .asciz "xorps ran\n"

    .bss
    .p2align 4
    .skip 4096
stack_top:

    .section .note.GNU-stack, "", @progbits
