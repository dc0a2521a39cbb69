//! The interrupt descriptor table, and the handler for CPU exceptions.
//!
//! Vectors 0-31 (exceptions) report the exception and end the VM; vectors
//! 0x20-0x2f (the PIC's IRQs) go to [`crate::irq`]. Other vectors are not
//! present, so raising one faults.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

use crate::print::{print, print_dec, print_hex, start_line};
use crate::{exit, irq, pic};

/// Exit status of a guest stopped by a CPU exception.
const EXCEPTION_EXIT_STATUS: u8 = 102;
const EXCEPTION_COUNT: usize = 32;
/// The 64-bit code segment set up in boot.rs.
const CODE_SELECTOR: u64 = 0x08;
/// Present, ring 0, 64-bit interrupt gate (clears IF on entry).
const INTERRUPT_GATE: u64 = 0x8e;

// One stub per exception: each calls rt_exception(vector, faulting RIP).
// The CPU pushes an error code before RIP for vectors 8, 10-14, 17, 21, 29
// and 30, so the stubs find RIP at 8(%rsp) there and at 0(%rsp) elsewhere.
global_asm!(
    r#"
    .section .text.exception_stubs, "ax", @progbits
    .macro exception_stub vector, rip_offset
    .type exception_stub_\vector, @function
exception_stub_\vector:
    mov $\vector, %edi
    mov \rip_offset(%rsp), %rsi
    and $-16, %rsp
    call rt_exception
    .size exception_stub_\vector, . - exception_stub_\vector
    .endm

    exception_stub 0, 0
    exception_stub 1, 0
    exception_stub 2, 0
    exception_stub 3, 0
    exception_stub 4, 0
    exception_stub 5, 0
    exception_stub 6, 0
    exception_stub 7, 0
    exception_stub 8, 8
    exception_stub 9, 0
    exception_stub 10, 8
    exception_stub 11, 8
    exception_stub 12, 8
    exception_stub 13, 8
    exception_stub 14, 8
    exception_stub 15, 0
    exception_stub 16, 0
    exception_stub 17, 8
    exception_stub 18, 0
    exception_stub 19, 0
    exception_stub 20, 0
    exception_stub 21, 8
    exception_stub 22, 0
    exception_stub 23, 0
    exception_stub 24, 0
    exception_stub 25, 0
    exception_stub 26, 0
    exception_stub 27, 0
    exception_stub 28, 0
    exception_stub 29, 8
    exception_stub 30, 8
    exception_stub 31, 0

    .section .rodata.exception_stubs, "a", @progbits
    .p2align 3
    .globl rt_exception_stubs
rt_exception_stubs:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    /// Entry addresses of the exception stubs, by vector.
    safe static rt_exception_stubs: [usize; EXCEPTION_COUNT];
}

/// Gates as pairs of quadwords; the CPU reads this table for the VM's life.
struct Idt(UnsafeCell<[[u64; 2]; 256]>);

// SAFETY: only `load` writes the table, once, before interrupts are enabled;
// after that only the CPU reads it.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; 256]));

/// Operand of `lidt`.
#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}

/// Fills in and loads the IDT. Call once, before enabling interrupts.
pub(crate) fn load() {
    // SAFETY: runs once at boot, single-threaded with interrupts off, so
    // this is the only reference to the table.
    let idt = unsafe { &mut *IDT.0.get() };
    for (vector, &stub) in rt_exception_stubs.iter().enumerate() {
        idt[vector] = gate(stub);
    }
    for (irq, &stub) in irq::stubs().iter().enumerate() {
        idt[usize::from(pic::VECTOR_BASE) + irq] = gate(stub);
    }
    let pointer = IdtPointer {
        limit: (size_of_val(idt) - 1) as u16,
        base: idt.as_ptr() as u64,
    };
    // SAFETY: the table is static, filled with gates to stubs that handle
    // their vectors, and no longer referenced from Rust.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) }
}

/// An interrupt gate to `handler` in the kernel's code segment.
fn gate(handler: usize) -> [u64; 2] {
    let handler = handler as u64;
    let low = (handler & 0xffff)
        | (CODE_SELECTOR << 16)
        | (INTERRUPT_GATE << 40)
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Reports a CPU exception and ends the VM; called by the stubs above.
#[unsafe(no_mangle)]
extern "C" fn rt_exception(vector: u64, rip: u64) -> ! {
    start_line();
    print("guest exception ");
    print_dec(vector);
    print(" at ");
    print_hex(rip);
    print("\n");
    exit(EXCEPTION_EXIT_STATUS)
}
