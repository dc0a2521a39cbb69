//! Builds the guest kernels in `guest-images/` and lists them for
//! `src/images.rs`.
//!
//! The guest workspace has its own target flags and linker script
//! (`guest-images/.cargo/config.toml`), so it is built by a separate cargo
//! run from its own directory, with its own target directory and none of
//! this build's environment: flags, wrappers (clippy's included), target
//! directory and jobserver meant for the host crates must not reach it.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{self, Command};

/// The guest binaries built into ftvm.
const IMAGES: &[&str] = &[
    "hello",
    "ticker",
    "exitloop",
    "diskcheck",
    "virtiobad",
    "kvstore",
    "stopwatch",
];
/// The guest workspace's library crates.
const LIBRARIES: &[&str] = &["rt", "virtio", "kvcore"];
/// The only Rust target installed; guests are `no_std` kernels built for it.
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The variables the inner cargo gets; everything else is cleared.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
];

fn main() {
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"),
    );
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let cargo = env::var_os("CARGO").expect("CARGO is set by cargo");
    let guest_dir = manifest_dir
        .parent()
        .expect("vmm/ is inside the workspace")
        .join("guest-images");

    watch(&guest_dir);

    let target_dir = out_dir.join("guest-target");
    let mut command = Command::new(&cargo);
    command
        .current_dir(&guest_dir)
        .env_clear()
        .envs(
            PASSED_ENV
                .iter()
                .filter_map(|name| Some((name, env::var_os(name)?))),
        )
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    let output = command.output().unwrap_or_else(|error| {
        fail(&format!(
            "cannot run {} to build the guest images: {error}",
            cargo.to_string_lossy()
        ))
    });
    if !output.status.success() {
        fail(&format!(
            "building the guest images in {} failed ({}):\n{}{}",
            guest_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }

    let built_dir = target_dir.join(GUEST_TARGET).join("release");
    let mut listing = String::from("&[\n");
    for name in IMAGES {
        let path = built_dir.join(name);
        if !path.is_file() {
            fail(&format!("guest image {} was not built", path.display()));
        }
        let path = path
            .to_str()
            .unwrap_or_else(|| fail(&format!("path {} is not UTF-8", path.display())));
        writeln!(
            listing,
            "    BuiltinImage {{ name: {name:?}, elf: &Aligned(*include_bytes!({path:?})).0 }},"
        )
        .expect("writing to a String cannot fail");
    }
    listing.push_str("]\n");
    let listing_path = out_dir.join("images.rs");
    fs::write(&listing_path, listing)
        .unwrap_or_else(|error| fail(&format!("cannot write {}: {error}", listing_path.display())));
}

/// Asks cargo to run this script again when a guest source, the guest
/// workspace's manifests, lockfile, config or linker script change. Source
/// directories are watched whole, so new files count; `guest-images/target`
/// (from builds run by hand there) is not watched.
fn watch(guest_dir: &Path) {
    for file in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml", "link.ld"] {
        println!("cargo:rerun-if-changed={}", guest_dir.join(file).display());
    }
    for member in LIBRARIES.iter().chain(IMAGES) {
        let member_dir = guest_dir.join(member);
        println!(
            "cargo:rerun-if-changed={}",
            member_dir.join("Cargo.toml").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            member_dir.join("src").display()
        );
        let build_script = member_dir.join("build.rs");
        if build_script.exists() {
            println!("cargo:rerun-if-changed={}", build_script.display());
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1);
}
