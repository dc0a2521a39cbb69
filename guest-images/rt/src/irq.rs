//! IRQ handling: per-IRQ handlers called from the PIC's vectors.
//!
//! Each IRQ vector's stub pushes the IRQ number and joins a common stub that
//! saves all general registers and calls [`rt_irq_dispatch`], which runs the
//! registered handler with interrupts off and then acknowledges the IRQ.

use core::arch::global_asm;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::pic;

global_asm!(
    r#"
    .section .text.irq_stubs, "ax", @progbits
    .irp irq, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .type irq_stub_\irq, @function
irq_stub_\irq:
    push $\irq
    jmp irq_common
    .size irq_stub_\irq, . - irq_stub_\irq
    .endr

    /* The CPU aligned RSP to 16 before pushing its 5-quadword frame; with
       the IRQ number and 15 registers on top, the call needs 8 more. */
    .type irq_common, @function
irq_common:
    .irp reg, rax,rbx,rcx,rdx,rsi,rdi,rbp,r8,r9,r10,r11,r12,r13,r14,r15
    push %\reg
    .endr
    cld                         /* the ABI's direction; memmove may have set DF */
    mov 15*8(%rsp), %edi
    sub $8, %rsp
    call rt_irq_dispatch
    add $8, %rsp
    .irp reg, r15,r14,r13,r12,r11,r10,r9,r8,rbp,rdi,rsi,rdx,rcx,rbx,rax
    pop %\reg
    .endr
    add $8, %rsp                /* the IRQ number */
    iretq
    .size irq_common, . - irq_common

    .section .rodata.irq_stubs, "a", @progbits
    .p2align 3
    .globl rt_irq_stubs
rt_irq_stubs:
    .irp irq, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .quad irq_stub_\irq
    .endr
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    /// Entry addresses of the IRQ stubs, by IRQ.
    safe static rt_irq_stubs: [usize; pic::IRQ_COUNT];
}

/// The handler of each IRQ, as a `fn()` pointer, or null.
static HANDLERS: [AtomicPtr<()>; pic::IRQ_COUNT] =
    [const { AtomicPtr::new(ptr::null_mut()) }; pic::IRQ_COUNT];

/// Entry addresses of the IRQ stubs, for the IDT.
pub(crate) fn stubs() -> &'static [usize; pic::IRQ_COUNT] {
    &rt_irq_stubs
}

/// Runs `handler` on each interrupt of `irq` (0-15) and unmasks it. The
/// handler runs with interrupts off and must leave the line low (drain its
/// device) before returning; the IRQ is acknowledged after it.
pub fn register(irq: u8, handler: fn()) {
    let Some(slot) = HANDLERS.get(usize::from(irq)) else {
        crate::fatal("guest: irq::register: no such IRQ")
    };
    slot.store(handler as *mut (), Ordering::Release);
    pic::unmask(irq);
}

/// Called by `irq_common` with the number of the IRQ taken.
#[unsafe(no_mangle)]
extern "C" fn rt_irq_dispatch(irq: u64) {
    let irq = irq as u8;
    if pic::is_spurious(irq) {
        return;
    }
    // The stubs pass 0-15, so `get` always finds a slot; unlike indexing, it
    // brings no panic path, and so none of core's formatting, into the image.
    let handler = HANDLERS
        .get(usize::from(irq))
        .map_or(ptr::null_mut(), |slot| slot.load(Ordering::Acquire));
    if !handler.is_null() {
        // SAFETY: `register` is the only writer, and it stores `fn()`s.
        let handler = unsafe { core::mem::transmute::<*mut (), fn()>(handler) };
        handler();
    }
    pic::end_of_interrupt(irq);
}
