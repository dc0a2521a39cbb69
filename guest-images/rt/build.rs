//! Rebuilds the runtime, and so relinks every kernel, when the linker script
//! changes: cargo does not track files named only in link arguments.
fn main() {
    println!("cargo:rerun-if-changed=../link.ld");
}
