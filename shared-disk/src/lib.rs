//! The shared disk image backend and the go-live test-and-set flag (see DESIGN.md §4).

pub mod arbiter;
pub mod image;
mod lock;

pub use arbiter::{Arbiter, ArbiterError, FlagState, Outcome};
pub use image::{DiskImage, ImageError, ImageLock};
