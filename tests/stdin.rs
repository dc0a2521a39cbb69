//! Fast input on stdin: the guest keeps its pace, ftvm reads stdin only as
//! fast as the guest takes bytes (so memory stays bounded), a recording
//! logs only what the guest received, and SIGTERM still ends ftvm at once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pair::{PairSetup, Side, serial, tick_numbers};
use common::{TIMEOUT, run, scratch_dir};

/// Far below what reading fast input into memory took (gigabytes).
const BOUNDED_KIB: u64 = 64 << 10;
const TERMINATED: i32 = 143;

/// A ticker that runs until it is stopped.
const ENDLESS: [&str; 4] = ["--kernel", "ticker", "--cmdline", "ticks=100000 hz=20"];

/// `command`, then the endless ticker.
fn endless(command: &[&str]) -> Vec<String> {
    command
        .iter()
        .chain(&ENDLESS)
        .map(|s| s.to_string())
        .collect()
}

/// `yes`, writing as fast as its reader takes lines, until dropped.
struct Yes(Child);

impl Yes {
    fn start() -> Self {
        Self(
            Command::new("yes")
                .stdout(Stdio::piped())
                .spawn()
                .expect("run yes"),
        )
    }

    fn output(&mut self) -> Stdio {
        Stdio::from(self.0.stdout.take().unwrap())
    }
}

impl Drop for Yes {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `side` printed tick `n`, and returns when.
fn tick(side: &Side, n: u64) -> Instant {
    assert!(
        side.stdout.wait_for(&format!("tick {n} "), TIMEOUT),
        "no tick {n}: {}",
        side.stderr.text()
    );
    Instant::now()
}

/// With `yes` on its stdin, `side` prints ticks at the guest's 20 Hz
/// (within twice the time, on a loaded machine), echoes the Ys, stays in
/// bounded memory, and SIGTERM ends it within a second with 143.
fn keeps_pace_then_terminates(side: Side) -> common::Finished {
    let from = tick(&side, 5);
    let to = tick(&side, 35);
    assert!(
        to - from < Duration::from_secs(3),
        "30 ticks at 20 Hz took {:?}",
        to - from
    );
    assert!(
        side.stdout.text().contains("Y\n"),
        "no input reached the guest"
    );
    let resident = side.resident_kib();
    assert!(resident < BOUNDED_KIB, "{resident} KiB resident");
    side.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let out = side.finish(TIMEOUT);
    let took = signalled.elapsed();
    assert_eq!(out.code(), TERMINATED, "{out:#?}");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    assert!(out.peak_kib < BOUNDED_KIB, "{} KiB at peak", out.peak_kib);
    let ticks = tick_numbers(&out.stdout);
    assert!(
        ticks.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "a tick is missing: {ticks:?}"
    );
    out
}

#[test]
fn yes_into_run_leaves_the_guest_its_pace() {
    let mut yes = Yes::start();
    let args = endless(&["run"]);
    keeps_pace_then_terminates(Side::start_with_stdin(&args, yes.output()));
}

#[test]
fn yes_into_record_logs_what_the_guest_took_and_replays() {
    let dir = scratch_dir("stdin-record");
    let trace = dir.join("yes.trace");
    let mut yes = Yes::start();
    let args = endless(&["record", "--trace", trace.to_str().unwrap()]);
    let recorded = keeps_pace_then_terminates(Side::start_with_stdin(&args, yes.output()));
    let replayed = run(&["replay", trace.to_str().unwrap(), "--verify"]);
    assert_eq!(replayed.code(), TERMINATED, "{replayed:#?}");
    assert!(replayed.stderr.contains("verified"), "{replayed:#?}");
    assert_eq!(replayed.stdout, recorded.stdout);
}

#[test]
fn yes_into_a_primary_leaves_the_guest_its_pace() {
    let _one = serial();
    let setup = PairSetup::new("stdin-primary");
    let backup = setup.start_backup(&ENDLESS);
    let mut yes = Yes::start();
    let args = setup.primary_args(&ENDLESS, &setup.key);
    let primary = Side::start_with_stdin(&args, yes.output());
    assert!(primary.wait_event("paired"));
    keeps_pace_then_terminates(primary);
    // The backup replayed the same input and ends as the primary did.
    let backup = backup.finish(TIMEOUT);
    assert_eq!(backup.code(), TERMINATED, "{backup:#?}");
    assert_eq!(backup.stdout, "");
}

#[test]
fn a_200_mb_file_on_stdin_is_read_as_the_guest_takes_it() {
    let file = scratch_dir("stdin-file").join("input");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let args = ["run", "--kernel", "ticker", "--cmdline", "ticks=20 hz=20"].map(String::from);
    let side = Side::start_with_stdin(&args, Stdio::from(std::fs::File::open(&file).unwrap()));
    let out = side.finish(TIMEOUT);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(tick_numbers(&out.stdout), (1..=20).collect::<Vec<_>>());
    // The file was not read into memory first: the guest ran from the start.
    assert!(out.peak_kib < BOUNDED_KIB, "{} KiB at peak", out.peak_kib);
}

#[test]
fn yes_into_a_backup_that_goes_live_leaves_the_guest_its_pace() {
    let _one = serial();
    let setup = PairSetup::new("stdin-backup");
    let mut yes = Yes::start();
    let backup = PairSetup::started(Side::start_with_stdin(
        &setup.backup_args(&ENDLESS),
        yes.output(),
    ));
    let mut primary = setup.start_primary(&ENDLESS);
    assert!(primary.stdout.wait_for("tick 2 ", TIMEOUT));
    primary.kill();
    // Live, it takes this host's stdin: the same flood as a primary's.
    assert!(backup.wait_event("live"));
    keeps_pace_then_terminates(backup);
}
