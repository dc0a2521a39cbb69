//! A byte queue from one interrupt handler to the main loop.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Single-producer (an interrupt handler), single-consumer (the code it
/// interrupts) queue of `N` bytes. `N` must be a power of two.
pub(crate) struct ByteRing<const N: usize> {
    bytes: [AtomicU8; N],
    /// Count of bytes ever pushed; only the producer writes it.
    head: AtomicUsize,
    /// Count of bytes ever popped; only the consumer writes it.
    tail: AtomicUsize,
}

impl<const N: usize> ByteRing<N> {
    pub(crate) const fn new() -> Self {
        assert!(N.is_power_of_two());
        Self {
            bytes: [const { AtomicU8::new(0) }; N],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Appends `byte`, or drops it when the queue is full.
    pub(crate) fn push(&self, byte: u8) {
        let head = self.head.load(Ordering::Relaxed);
        if head.wrapping_sub(self.tail.load(Ordering::Acquire)) == N {
            return;
        }
        self.bytes[head % N].store(byte, Ordering::Relaxed);
        self.head.store(head.wrapping_add(1), Ordering::Release);
    }

    /// Takes the oldest byte.
    pub(crate) fn pop(&self) -> Option<u8> {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail == self.head.load(Ordering::Acquire) {
            return None;
        }
        let byte = self.bytes[tail % N].load(Ordering::Relaxed);
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(byte)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Relaxed) == self.head.load(Ordering::Acquire)
    }
}
