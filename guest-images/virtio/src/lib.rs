//! Virtio drivers for ftvm's guest kernels, on the `virtio-drivers` crate.
//!
//! A kernel that uses them calls [`heap::init`] first (this crate provides
//! the global allocator, whose memory is the RAM above the kernel), finds
//! its device with `rt::virtio_mmio::find`, and opens it with
//! [`blk::BlockDevice::new`] or [`net::NetDevice::new`]. Drivers wait for
//! the device with `sti; hlt`, never by polling memory: on ftvm a guest
//! that makes no VM exits receives no events.
#![no_std]

extern crate alloc;

pub mod blk;
mod hal;
pub mod heap;
pub mod net;
