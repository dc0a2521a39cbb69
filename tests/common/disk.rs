//! The `diskcheck` guest's `seq` records, written and counted.

use std::path::Path;

/// `diskcheck` writing `count` records on `image`, one per PIT tick, each
/// written and flushed before its `seq i` line acknowledges it.
pub fn seq_guest(image: &Path, count: u64) -> Vec<String> {
    [
        "--kernel",
        "diskcheck",
        "--disk",
        image.to_str().unwrap(),
        "--cmdline",
        &format!("mode=seq count={count}"),
    ]
    .map(String::from)
    .to_vec()
}

/// `diskcheck` counting the records on `image`.
pub fn seqcheck_guest(image: &Path) -> Vec<String> {
    [
        "--kernel",
        "diskcheck",
        "--disk",
        image.to_str().unwrap(),
        "--cmdline",
        "mode=seqcheck",
    ]
    .map(String::from)
    .to_vec()
}

/// `ftvm COMMAND GUEST...`, waited for.
pub fn ftvm(command: &[&str], guest: &[String]) -> super::Finished {
    let mut args: Vec<&str> = command.to_vec();
    args.extend(guest.iter().map(String::as_str));
    super::run(&args)
}

/// Consecutive valid records from sector 0, as a fresh VM reads them.
pub fn records_on(image: &Path) -> u64 {
    let out = ftvm(&["run"], &seqcheck_guest(image));
    assert_eq!(out.code(), 0, "{out:#?}");
    out.stdout
        .lines()
        .find_map(|line| line.strip_prefix("seqcheck: ")?.strip_suffix(" records"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seqcheck line: {out:#?}"))
}
