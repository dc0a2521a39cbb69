//! A pair across two network namespaces made by `scripts/two-hosts.sh`,
//! failed by `scripts/takeover.sh`: killing the primary's host, cutting
//! its link (split brain), and the go-live flag out of reach.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::hosts::Hosts;
use common::pair::{
    NOT_LIVE, PairSetup, Side, assert_whole, host_name, join_outputs, serial, ticker,
};

/// A pair of `ticker` across fresh hosts, once it has paired.
fn paired(host: &str, test: &str) -> (Hosts, PairSetup, Side, Side) {
    let hosts = Hosts::up(&host_name(host));
    let setup = hosts.setup(test);
    let backup = hosts.start_backup(&setup, &ticker());
    let primary = hosts.start_primary(&setup, &ticker());
    assert!(primary.wait_event("paired"), "{}", primary.stderr.text());
    (hosts, setup, backup, primary)
}

#[test]
fn killing_the_primarys_host_hands_the_guest_to_the_backup() {
    let _one = serial();
    let (hosts, _setup, backup, primary) = paired("kill", "ns-kill");
    thread::sleep(Duration::from_millis(400));
    hosts.takeover("kill");
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nbackup: {backup:#?}");
    assert_eq!(backup.code(), 0, "{context}");
    assert!(backup.event("live").is_some(), "{context}");
    assert_whole(&join_outputs(&primary.stdout, &backup.stdout), &context);
}

#[test]
fn a_cut_link_leaves_exactly_one_side_live() {
    let _one = serial();
    let (hosts, setup, backup, primary) = paired("cut", "ns-cut");
    thread::sleep(Duration::from_millis(300));
    hosts.takeover("cut");
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    let flag = setup.arbiter_status();
    let context = format!("flag: {flag}\nprimary: {primary:#?}\nbackup: {backup:#?}");
    match (primary.code(), backup.code()) {
        (0, NOT_LIVE) => {
            assert_whole(&primary.stdout, &context);
            assert_eq!(backup.stdout, "", "{context}");
            assert!(flag.contains("\"primary"), "{context}");
        }
        (NOT_LIVE, 0) => {
            assert_whole(&join_outputs(&primary.stdout, &backup.stdout), &context);
            assert!(flag.contains("\"backup"), "{context}");
        }
        _ => panic!("want exactly one side live: {context}"),
    }
}

#[test]
fn a_partitioned_old_primary_emits_nothing_once_the_backup_is_live() {
    let _one = serial();
    let (hosts, _setup, backup, primary) = paired("part", "ns-partition");
    thread::sleep(Duration::from_millis(300));
    // Frozen (as by a long pause) and cut off: the backup takes over.
    primary.signal(libc::SIGSTOP);
    hosts.takeover("cut");
    assert!(backup.wait_event("live"), "{}", backup.stderr.text());
    let before = primary.stdout.text();
    primary.signal(libc::SIGCONT);
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nbackup: {backup:#?}");
    assert_eq!(primary.code(), NOT_LIVE, "{context}");
    assert_eq!(
        primary.stdout, before,
        "the old primary wrote after the backup went live: {context}"
    );
    assert_eq!(backup.code(), 0, "{context}");
    assert_whole(&join_outputs(&before, &backup.stdout), &context);
}

#[test]
fn a_partitioned_old_primary_lands_no_disk_write_once_the_backup_is_live() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("pdsk"));
    let setup = hosts.setup("ns-partition-disk");
    let disk = setup.dir.join("shared.img");
    std::fs::write(&disk, vec![0u8; 512 * 256]).unwrap();
    let guest = [
        "--kernel",
        "diskcheck",
        "--disk",
        disk.to_str().unwrap(),
        "--cmdline",
        "mode=seq count=100",
    ];
    let backup = hosts.start_backup(&setup, &guest);
    let primary = hosts.start_primary(&setup, &guest);
    assert!(
        primary.stdout.wait_for("seq 10\n", TIMEOUT),
        "{}",
        primary.stderr.text()
    );
    primary.signal(libc::SIGSTOP);
    hosts.takeover("cut");
    let backup = backup.finish(TIMEOUT);
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert!(backup.event("live").is_some(), "{backup:#?}");
    // The new primary has written every record and ended; from now on a
    // write, even of the same bytes, would move the image's mtime.
    let written = std::fs::metadata(&disk).unwrap().modified().unwrap();
    let before = primary.stdout.text();
    thread::sleep(Duration::from_millis(50));
    primary.signal(libc::SIGCONT);
    let primary = primary.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nbackup: {backup:#?}");
    assert_eq!(primary.code(), NOT_LIVE, "{context}");
    assert_eq!(primary.stdout, before, "{context}");
    assert_eq!(
        std::fs::metadata(&disk).unwrap().modified().unwrap(),
        written,
        "the old primary wrote the disk after the backup went live: {context}"
    );
}

#[test]
fn neither_side_goes_live_while_a_third_process_holds_the_flag() {
    let _one = serial();
    let (hosts, setup, backup, primary) = paired("held", "ns-held");
    thread::sleep(Duration::from_millis(300));
    let held = common::pair::HeldFlag::hold(&setup.arbiter);
    hosts.takeover("cut");
    // Both lose their peer; neither may go on without the flag.
    thread::sleep(Duration::from_millis(1000));
    let (primary_before, backup_before) = (primary.stdout.text(), backup.stdout.text());
    thread::sleep(Duration::from_millis(1000));
    assert!(
        primary.child_running() && backup.child_running(),
        "a side gave up waiting"
    );
    assert_eq!(
        primary.stdout.text(),
        primary_before,
        "the primary went on without the flag"
    );
    assert_eq!(
        backup.stdout.text(),
        "",
        "the backup went live without the flag"
    );
    assert_eq!(backup_before, "");
    drop(held);
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nbackup: {backup:#?}");
    match (primary.code(), backup.code()) {
        (0, NOT_LIVE) => assert_whole(&primary.stdout, &context),
        (NOT_LIVE, 0) => assert_whole(&join_outputs(&primary.stdout, &backup.stdout), &context),
        _ => panic!("want exactly one side live: {context}"),
    }
}

/// The processes in network namespace `namespace`.
fn pids_in(namespace: &str) -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn gone(pid: &str) -> bool {
    // Gone, or dead and waiting for a reaper.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
}

#[test]
fn the_two_hosts_script_cleans_up_when_interrupted() {
    let _one = serial();
    let name = host_name("intr");
    let mut script = Command::new(common::hosts::script("two-hosts.sh"))
        .args([
            "pair",
            &name,
            "--kernel",
            "ticker",
            "--cmdline",
            "ticks=100000",
        ])
        .env("FTVM", env!("CARGO_BIN_EXE_ftvm"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let (primary, backup) = loop {
        let (a, b) = (pids_in(&format!("{name}-a")), pids_in(&format!("{name}-b")));
        if !a.is_empty() && !b.is_empty() {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "the pair never started");
        thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: signals a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(script.id() as i32, libc::SIGINT) }, 0);
    let status = script.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(
        !namespaces.contains(&format!("{name}-")),
        "left behind: {namespaces}"
    );
    for pid in primary.iter().chain(&backup) {
        assert!(gone(pid), "process {pid} of the pair still runs");
    }
}
