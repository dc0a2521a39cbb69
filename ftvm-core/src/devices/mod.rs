//! Device models: pure state machines. They never read a clock, start a
//! thread, draw randomness or touch a file; time and outside bytes reach them
//! as arguments, applied by the core at deterministic exits.

pub mod i8042;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;
pub mod virtio;
