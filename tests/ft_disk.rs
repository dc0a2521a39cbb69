//! A primary/backup pair with a shared disk: every write the guest saw
//! acknowledged is on the disk after a takeover, and a write the backup has
//! not acknowledged never reaches the disk.
//!
//! Pairs are run one at a time (docs/DESIGN.md §8).

mod common;

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use common::TIMEOUT;
use common::disk::{records_on, seq_guest};
use common::pair::{PairSetup, Side, join_outputs, moment, seed, serial};

const RECORDS: u64 = 100;

fn image(setup: &PairSetup) -> PathBuf {
    let path = setup.dir.join("shared.img");
    fs::write(&path, vec![0u8; 512 * 256]).unwrap();
    path
}

/// A backup and a primary of `guest`, each with its extra options, once
/// the backup listens.
fn start_pair(
    setup: &PairSetup,
    guest: &[String],
    backup_options: &[&str],
    primary_options: &[&str],
) -> (Side, Side) {
    let with = |mut args: Vec<String>, options: &[&str]| {
        args.extend(options.iter().map(|option| option.to_string()));
        args.extend_from_slice(guest);
        args
    };
    let backup = PairSetup::started(Side::start(&with(setup.backup_args(&[]), backup_options)));
    let primary = Side::start(&with(setup.primary_args(&[], &setup.key), primary_options));
    (backup, primary)
}

/// A pair whose backup may be stopped without being declared lost, and
/// whose primary flow control never holds back: only the output rule does.
/// Returned once the guest has acknowledged 11 records.
fn patient_pair(setup: &PairSetup, guest: &[String]) -> (Side, Side) {
    let slow = ["--timeout-ms", "8000", "--heartbeat-ms", "50"];
    let unthrottled = [
        "--timeout-ms",
        "8000",
        "--heartbeat-ms",
        "50",
        "--max-lag-ms",
        "10000",
    ];
    let (backup, primary) = start_pair(setup, guest, &slow, &unthrottled);
    assert!(
        primary.stdout.wait_for("seq 10\n", TIMEOUT),
        "{}",
        primary.stderr.text()
    );
    (backup, primary)
}

/// The numbers of the `seq i` lines, in order.
fn acknowledged(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|line| line.strip_prefix("seq ")?.parse().ok())
        .collect()
}

#[test]
fn takeover_keeps_every_acknowledged_disk_write() {
    let _one = serial();
    let seed = seed();
    for run in 0..5u64 {
        let setup = PairSetup::new(&format!("ft-disk-{run}"));
        let image = image(&setup);
        let guest = seq_guest(&image, RECORDS);
        let (backup, mut primary) = start_pair(&setup, &guest, &[], &[]);
        assert!(primary.wait_event("paired"), "{}", primary.stderr.text());
        // 100 records take about a second of guest time.
        let moment = moment(seed, run, 50, 700);
        thread::sleep(moment);
        primary.kill();
        let released = primary.stdout.text();
        let backup = backup.finish(TIMEOUT);
        let context = format!(
            "run {run}, killed after {moment:?}\nprimary released:\n{released}\nbackup: {backup:#?}"
        );
        assert_eq!(backup.code(), 0, "{context}");
        assert!(backup.event("live").is_some(), "{context}");
        let joined = join_outputs(&released, &backup.stdout);
        assert_eq!(
            acknowledged(&joined),
            (0..RECORDS).collect::<Vec<_>>(),
            "{context}"
        );
        // Every record either side acknowledged is on the shared disk, and
        // so are the rest, written by the new primary.
        assert_eq!(records_on(&image), RECORDS, "{context}");
    }
}

#[test]
fn a_write_the_backup_has_not_acknowledged_never_reaches_the_disk() {
    let _one = serial();
    let setup = PairSetup::new("ft-disk-stall");
    let image = image(&setup);
    let guest = seq_guest(&image, RECORDS);
    let (backup, primary) = patient_pair(&setup, &guest);
    backup.signal(libc::SIGSTOP);
    // What was acknowledged before the stop may still land; then nothing.
    thread::sleep(Duration::from_millis(300));
    let before = fs::read(&image).unwrap();
    let printed = acknowledged(&primary.stdout.text()).len();
    thread::sleep(Duration::from_millis(1500));
    let after = fs::read(&image).unwrap();
    let still = acknowledged(&primary.stdout.text()).len();
    backup.signal(libc::SIGCONT);
    assert!(
        before == after,
        "a write reached the disk while the backup was stopped"
    );
    assert_eq!(printed, still, "the guest saw no write completed meanwhile");
    assert!(printed < RECORDS as usize, "the guest was still writing");
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    assert_eq!(primary.code(), 0, "{primary:#?}");
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert_eq!(
        acknowledged(&primary.stdout),
        (0..RECORDS).collect::<Vec<_>>()
    );
    assert_eq!(records_on(&image), RECORDS);
}

#[test]
fn a_request_in_flight_at_the_takeover_is_issued_again() {
    let _one = serial();
    let setup = PairSetup::new("ft-disk-reissue");
    let image = image(&setup);
    let guest = seq_guest(&image, RECORDS);
    let (backup, mut primary) = patient_pair(&setup, &guest);
    // The backup stops acknowledging: the guest's next write is held, and
    // dies unperformed with the primary. The backup has the request in its
    // log but no completion, so it must issue the write itself.
    backup.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_millis(300));
    primary.kill();
    let released = primary.stdout.text();
    backup.signal(libc::SIGCONT);
    let backup = backup.finish(TIMEOUT);
    let context = format!("primary released:\n{released}\nbackup: {backup:#?}");
    assert_eq!(backup.code(), 0, "{context}");
    let reissued: u64 = backup
        .stderr
        .split(" disk requests re-issued")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no re-issue count: {context}"));
    assert!(reissued >= 1, "{context}");
    assert_eq!(
        acknowledged(&join_outputs(&released, &backup.stdout)),
        (0..RECORDS).collect::<Vec<_>>(),
        "{context}"
    );
    assert_eq!(records_on(&image), RECORDS, "{context}");
}
