//! The virtio block device through the real binary: guests write, flush
//! and read back a disk image; read-only images refuse writes; a recorded
//! run replays without its disk; bad images are refused at start; a hostile
//! driver cannot hurt the VMM.

mod common;

use std::fs;
use std::path::PathBuf;

use common::disk::{ftvm, records_on, seq_guest, seqcheck_guest};
use common::{run, scratch_dir};

const INVALID_DISK: i32 = 113;
const SECTOR: usize = 512;

/// A zeroed disk image of `sectors` sectors in a fresh directory.
fn disk(test: &str, sectors: usize) -> PathBuf {
    let path = scratch_dir(test).join("disk.img");
    fs::write(&path, vec![0u8; sectors * SECTOR]).unwrap();
    path
}

fn diskcheck(disk: &str, cmdline: &str) -> common::Finished {
    run(&[
        "run",
        "--kernel",
        "diskcheck",
        "--disk",
        disk,
        "--cmdline",
        cmdline,
    ])
}

#[test]
fn a_guest_writes_flushes_and_reads_back_its_disk() {
    let image = disk("disk-pattern", 128);
    let path = image.to_str().unwrap();
    let out = diskcheck(path, "mode=pattern seed=7 sectors=32");
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(
        out.stdout
            .starts_with("diskcheck: capacity=128 ro=0 id=ftvm-disk\n"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("pattern written and verified"));
    // The data is in the image file, and a fresh boot reads it back.
    let bytes = fs::read(&image).unwrap();
    assert!(bytes[..32 * SECTOR].iter().any(|&b| b != 0));
    assert!(bytes[32 * SECTOR..].iter().all(|&b| b == 0), "nothing more");
    let out = diskcheck(path, "mode=verify seed=7 sectors=32");
    assert_eq!(out.code(), 0, "{out:#?}");
    let other_seed = diskcheck(path, "mode=verify seed=8 sectors=32");
    assert_eq!(other_seed.code(), 1, "{other_seed:#?}");
}

#[test]
fn a_read_only_image_is_offered_read_only_and_writes_fail_cleanly() {
    let image = disk("disk-ro", 64);
    fs::write(&image, vec![0x5a; 64 * SECTOR]).unwrap();
    let ro = format!("{},ro", image.display());
    let out = diskcheck(&ro, "mode=pattern seed=1 sectors=4");
    assert_eq!(out.code(), 3, "{out:#?}");
    assert!(out.stdout.contains("ro=1"), "{out:#?}");
    assert!(out.stdout.contains("write failed: io error"), "{out:#?}");
    assert_eq!(fs::read(&image).unwrap(), vec![0x5a; 64 * SECTOR]);
}

#[test]
fn a_recorded_disk_run_replays_without_the_disk() {
    let image = disk("disk-replay", 256);
    let trace = image.with_file_name("seq.trace");
    let mut args = vec![
        "record".to_string(),
        "--trace".into(),
        trace.display().to_string(),
    ];
    args.extend(seq_guest(&image, 30));
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(records_on(&image), 30);
    // Reads are in the trace too: record a run that reads the disk back.
    let check = image.with_file_name("check.trace");
    let check_arg = check.to_str().unwrap();
    let recorded = ftvm(&["record", "--trace", check_arg], &seqcheck_guest(&image));
    assert_eq!(recorded.code(), 0, "{recorded:#?}");
    fs::remove_file(&image).unwrap();
    for (trace, console) in [(&trace, &out.stdout), (&check, &recorded.stdout)] {
        let replayed = run(&["replay", "--verify", trace.to_str().unwrap()]);
        assert_eq!(replayed.code(), 0, "{replayed:#?}");
        assert_eq!(&replayed.stdout, console);
        assert!(!image.exists(), "the replay made no disk");
    }
    let inspected = run(&["trace", "inspect", check.to_str().unwrap()]);
    assert!(
        inspected.stdout.contains("disk completion"),
        "{inspected:#?}"
    );
}

#[test]
fn bad_disk_images_are_refused_at_start() {
    let dir = scratch_dir("disk-bad");
    let missing = dir.join("missing.img");
    let empty = dir.join("empty.img");
    fs::write(&empty, b"").unwrap();
    let ragged = dir.join("ragged.img");
    fs::write(&ragged, vec![0u8; 1000]).unwrap();
    for (image, needle) in [
        (&missing, "No such file"),
        (&empty, "is empty"),
        (&ragged, "not a whole number of 512-byte sectors"),
        (&dir, "disk image"),
    ] {
        let out = diskcheck(image.to_str().unwrap(), "mode=seqcheck");
        out.assert_refused(INVALID_DISK, needle);
    }
}

#[test]
fn a_hostile_driver_is_refused_without_harm_to_the_vmm() {
    let image = disk("disk-hostile", 64);
    let out = run(&[
        "run",
        "--kernel",
        "virtiobad",
        "--disk",
        image.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{out:#?}");
    let cases: Vec<_> = out
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("virtiobad: case "))
        .collect();
    assert!(cases.len() >= 10, "{out:#?}");
    for case in cases {
        let outcome = out
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("virtiobad: {case}: ")))
            .unwrap_or_else(|| panic!("no outcome for {case}: {out:#?}"));
        assert!(
            ["ioerr", "dropped", "ignored"].contains(&outcome),
            "{case}: {outcome}"
        );
    }
    assert_eq!(out.stdout.matches("virtiobad: recovery ok").count(), 10);
    assert!(out.stdout.ends_with("virtiobad: all cases survived\n"));
    assert!(!out.stderr.contains("panicked"));
}

#[test]
fn a_second_vm_on_an_image_in_use_is_refused() {
    let image = disk("disk-in-use", 64);
    let path = image.to_str().unwrap();
    let args: Vec<String> = [
        "run",
        "--kernel",
        "ticker",
        "--cmdline",
        "ticks=100000 hz=20",
        "--disk",
        path,
    ]
    .map(String::from)
    .to_vec();
    let first = common::pair::Side::start(&args);
    assert!(first.stdout.wait_for("tick 1 ", common::TIMEOUT));
    for disk_arg in [path.to_string(), format!("{path},ro")] {
        let second = run(&["run", "--kernel", "hello", "--disk", &disk_arg]);
        second.assert_refused(INVALID_DISK, "in use");
    }
    first.signal(libc::SIGTERM);
    assert_eq!(first.finish(common::TIMEOUT).code(), 143);
    // Free again once the first VM ended.
    let after = run(&["run", "--kernel", "hello", "--disk", path]);
    assert_eq!(after.code(), 0, "{after:#?}");
}

#[test]
fn an_image_truncated_under_the_guest_fails_its_requests() {
    let image = disk("disk-truncated", 2048);
    let guest = seq_guest(&image, 1000);
    let mut args = vec!["run".to_string()];
    args.extend(guest);
    let side = common::pair::Side::start(&args);
    assert!(side.stdout.wait_for("seq 20\n", common::TIMEOUT));
    let kept = 16 * SECTOR as u64;
    fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(kept)
        .unwrap();
    let out = side.finish(common::TIMEOUT);
    assert_eq!(out.code(), 2, "the guest's I/O error: {out:#?}");
    assert!(out.stdout.contains("failed: io error"), "{out:#?}");
    assert_eq!(
        out.stderr.matches("changed size").count(),
        1,
        "one warning: {out:#?}"
    );
    // Nothing was written past the image's new end.
    assert_eq!(fs::metadata(&image).unwrap().len(), kept);
}
