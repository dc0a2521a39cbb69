//! PVH entry: from the loader's 32-bit protected mode to 64-bit Rust.
//!
//! The PVH ABI enters `pvh_start32` in 32-bit protected mode with flat
//! segments, paging and interrupts off, and EBX holding the physical address
//! of `hvm_start_info`. We load our own GDT, switch to long mode on static
//! identity page tables, zero .bss, set the stack and call `rt_start`.

use core::arch::global_asm;

/// Size of the boot stack, which interrupt handlers share.
const STACK_SIZE: usize = 64 * 1024;

global_asm!(
    r#"
    /* XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit PVH entry point. */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                     /* namesz: "Xen\0" */
    .long 4                     /* descsz: a 32-bit address */
    .long 18                    /* type */
    .asciz "Xen"
    .p2align 2
    .long pvh_start32
    .p2align 2

    .section .text.boot, "ax", @progbits
    .code32
    .globl pvh_start32
    .type pvh_start32, @function
pvh_start32:
    cli
    cld
    lgdt boot_gdt_ptr
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs

    mov %cr4, %eax
    or $0x20, %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER */
    rdmsr
    or $0x100, %eax             /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax        /* CR0.PG | CR0.PE */
    mov %eax, %cr0
    ljmp $0x08, $pvh_start64
    .size pvh_start32, . - pvh_start32

    .code64
    .type pvh_start64, @function
pvh_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs

    /* Zero .bss by quadwords (link.ld aligns it to 8 and leaves the stack,
       which needs no zeroing, out). EBX, the start info, survives. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $3, %ecx
    xor %eax, %eax
    rep stosq

    mov $boot_stack_top, %esp   /* zero-extended into RSP */
    mov %ebx, %edi              /* rt_start(start_info) */
    call rt_start
    ud2
    .size pvh_start64, . - pvh_start64

    /* Flat segments. Accessed bits are preset so the CPU never writes here. */
    .section .data.boot_gdt, "aw", @progbits
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9b000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf93000000ffff    /* 0x10: flat data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    /* Identity map of the first 4 GiB with 2 MiB pages, emitted whole so
       that it is loaded rather than computed. Accessed and dirty bits are
       preset so the page walker never writes them. */
    .section .data.boot_page_tables, "aw", @progbits
    .p2align 12
boot_pml4:
    .quad boot_pdpt + 0x23      /* present, writable, accessed */
    .fill 511, 8, 0
boot_pdpt:
    .quad boot_pd + 0x0000 + 0x23
    .quad boot_pd + 0x1000 + 0x23
    .quad boot_pd + 0x2000 + 0x23
    .quad boot_pd + 0x3000 + 0x23
    .fill 508, 8, 0
boot_pd:
    .set .Lpage, 0
    .rept 2048
    .quad .Lpage + 0xe3         /* present, writable, accessed, dirty, 2 MiB */
    .set .Lpage, .Lpage + 0x200000
    .endr

    .section .boot_stack, "aw", @nobits
    .p2align 4
    .skip {stack_size}
boot_stack_top:
    /* link.ld puts the boot stack last: here the loaded image ends. */
    .globl rt_image_end
rt_image_end:
    "#,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);
