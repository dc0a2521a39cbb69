//! The memory functions the compiler emits calls to.
//!
//! Written with string instructions so that the compiler cannot recognise
//! them as copy loops and turn them back into calls to themselves; the
//! comparison loops compile to plain byte compares. The direction flag is
//! clear on entry, as the ABI requires.
//!
//! Forward copies and fills move quadwords, then the last bytes: KVM's
//! emulator runs a `rep` string instruction one iteration at a time, each
//! costing about as much as an instruction, so eight bytes an iteration is
//! eight times faster than one.

use core::arch::asm;

/// # Safety
///
/// `dest` and `src` are valid for `len` bytes and do not overlap.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    // SAFETY: copies `len / 8` quadwords then `len % 8` bytes forward,
    // exactly the `len` bytes of the ranges the caller vouches for.
    unsafe {
        asm!("rep movsq", "mov ecx, {tail:e}", "rep movsb",
            tail = in(reg) len % 8,
            inout("rcx") len / 8 => _, inout("rdi") dest => _, inout("rsi") src => _,
            options(nostack, preserves_flags))
    }
    dest
}

/// # Safety
///
/// `dest` and `src` are valid for `len` bytes; they may overlap.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= len {
        // `dest` is below `src` or clear of it: a forward copy reads each
        // byte before overwriting it.
        // SAFETY: as for memcpy.
        unsafe { memcpy(dest, src, len) };
    } else if len > 0 {
        // SAFETY: copies the same ranges backwards, from the last byte, so
        // each byte is read before the overlapping copy overwrites it; the
        // direction flag is cleared again before returning.
        unsafe {
            asm!("std", "rep movsb", "cld",
                inout("rcx") len => _,
                inout("rdi") dest.add(len - 1) => _,
                inout("rsi") src.add(len - 1) => _,
                options(nostack))
        }
    }
    dest
}

/// # Safety
///
/// `dest` is valid for `len` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dest: *mut u8, value: i32, len: usize) -> *mut u8 {
    // The byte in every byte of a quadword.
    let pattern = u64::from(value as u8) * 0x0101_0101_0101_0101;
    // SAFETY: writes `len / 8` quadwords then `len % 8` bytes, exactly the
    // `len` bytes the caller vouches for.
    unsafe {
        asm!("rep stosq", "mov ecx, {tail:e}", "rep stosb",
            tail = in(reg) len % 8,
            inout("rcx") len / 8 => _, inout("rdi") dest => _, in("rax") pattern,
            options(nostack, preserves_flags))
    }
    dest
}

/// # Safety
///
/// `a` and `b` are valid for `len` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, len: usize) -> i32 {
    for i in 0..len {
        // SAFETY: `i < len`, within the ranges the caller vouches for.
        let (x, y) = unsafe { (a.add(i).read(), b.add(i).read()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
///
/// `a` and `b` are valid for `len` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, len: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, len) }
}
