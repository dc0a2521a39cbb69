//! What the benchmarks on the hosts of `scripts/two-hosts.sh` share.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/two-hosts.sh ARGS`, which must succeed.
pub fn script(args: &[&str]) {
    let status = Command::new(repo().join("scripts/two-hosts.sh"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "two-hosts.sh {args:?}");
}

/// A fresh go-live flag at `path`, in place of any before.
pub fn init_arbiter(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = Command::new(env!("CARGO_BIN_EXE_ftvm"))
        .args(["arbiter", "init"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ftvm arbiter init {}", path.display());
}
