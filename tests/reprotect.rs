//! Re-protection on this machine's loopback: a live side sends its running
//! guest to a standby (`ftvm backup --join`), which becomes its backup, so
//! the guest survives failure after failure; and the faults of a transfer:
//! either side killed during it, standbys that are refused, garbage on the
//! ports.
//!
//! Pairs run one at a time (docs/DESIGN.md §8).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use common::TIMEOUT;
use common::pair::{
    PairSetup, Side, free_address, join_outputs, moment, noise, seed, serial, tick_numbers,
};
use common::standby::{reprotect, transfers, wait_nth};

const PAIRING_FAILURE: i32 = 115;
const INVALID_DISK: i32 = 113;

/// `ticker` counting `ticks` at 50 Hz.
fn ticker(ticks: u64) -> Vec<String> {
    [
        "--kernel".into(),
        "ticker".into(),
        "--cmdline".into(),
        format!("ticks={ticks} hz=50"),
    ]
    .to_vec()
}

/// As `ticker`, with `more` options.
fn guest(ticks: u64, more: &[&str]) -> Vec<String> {
    let mut args = ticker(ticks);
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Asserts `console` is every tick of a `ticks`-tick run, in order.
fn assert_every_tick(console: &str, ticks: u64, context: &str) {
    assert_eq!(
        tick_numbers(console),
        (1..=ticks).collect::<Vec<_>>(),
        "{context}\n{console}"
    );
    assert!(console.ends_with("ticker: done\n"), "{context}\n{console}");
}

/// A primary of `guest` alone (its backup's address answers nothing),
/// protecting itself with `standbys`.
fn lone_primary(setup: &PairSetup, guest: &[String], standbys: &[SocketAddr]) -> Side {
    let mut args = setup.primary_args(&refs(guest), &setup.key);
    args.extend(["--wait-backup-ms".into(), "100".into()]);
    args.extend(reprotect(standbys));
    Side::start(&args)
}

#[test]
fn a_guest_survives_three_failures_with_two_standbys() {
    let _one = serial();
    let seed = seed();
    const TICKS: u64 = 250;
    let setup = PairSetup::new("rp-three");
    let (first, second) = (free_address(), free_address());
    // Each standby, once live, protects itself with the other.
    let mut standby_one = setup.start_standby(first, &[second], &[]);
    let standby_two = setup.start_standby(second, &[first], &[]);
    let mut backup_args = setup.backup_args(&refs(&ticker(TICKS)));
    backup_args.extend(reprotect(&[first, second]));
    let mut backup = PairSetup::started(Side::start(&backup_args));
    let mut primary_args = setup.primary_args(&refs(&ticker(TICKS)), &setup.key);
    primary_args.extend(reprotect(&[first, second]));
    let mut primary = Side::start(&primary_args);
    assert!(primary.wait_event("paired"), "{}", primary.stderr.text());

    // Each kill comes at a random moment once the guest is protected again.
    thread::sleep(moment(seed, 0, 100, 400));
    primary.kill();
    let protected = wait_nth(&backup, "protected", 1);
    assert_eq!(protected["peer"], first.to_string(), "{protected}");
    thread::sleep(moment(seed, 1, 100, 400));
    backup.kill();
    let protected = wait_nth(&standby_one, "protected", 1);
    assert_eq!(protected["peer"], second.to_string(), "{protected}");
    thread::sleep(moment(seed, 2, 100, 400));
    standby_one.kill();

    let last = standby_two.finish(TIMEOUT);
    let outputs = [
        primary.stdout.text(),
        backup.stdout.text(),
        standby_one.stdout.text(),
    ];
    let context = format!(
        "released: {outputs:#?}\nbackup: {}\nfirst standby: {}\nlast: {last:#?}",
        backup.stderr.text(),
        standby_one.stderr.text()
    );
    assert_eq!(last.code(), 0, "{context}");
    let whole = outputs
        .iter()
        .chain([&last.stdout])
        .fold(String::new(), |joined, next| join_outputs(&joined, next));
    assert_every_tick(&whole, TICKS, &context);
    // The last standby paired, lost its live side and went live.
    let names = last.event_names();
    for name in ["paired", "peer_lost", "live"] {
        assert!(names.contains(&name.to_string()), "{context}");
    }
    assert!(!names.contains(&"diverged".to_string()), "{context}");
    // Two re-protections: the flag moved twice, and the last standby won it.
    let flag = setup.arbiter_status();
    assert!(flag.starts_with("generation 2, owner standby"), "{flag}");
}

#[test]
fn a_new_backup_checks_every_digest_and_ends_with_the_guest() {
    let _one = serial();
    const TICKS: u64 = 60;
    let setup = PairSetup::new("rp-exact");
    let address = free_address();
    let standby = setup.start_standby(address, &[], &[]);
    let primary = lone_primary(
        &setup,
        &guest(TICKS, &["--digest-every", "500"]),
        &[address],
    );
    let primary = primary.finish(TIMEOUT);
    let standby = standby.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nstandby: {standby:#?}");
    assert_eq!(primary.code(), 0, "{context}");
    assert_every_tick(&primary.stdout, TICKS, &context);
    // The standby replayed from the transfer to the end, checking every
    // digest and the end record, and never went live.
    assert_eq!(standby.code(), 0, "{context}");
    assert_eq!(standby.stdout, "", "{context}");
    assert!(standby.event("paired").is_some(), "{context}");
    assert!(standby.event("live").is_none(), "{context}");
    let protected = primary.event("protected").expect("protected");
    assert_eq!(protected["peer"], address.to_string());
    for field in ["pause_ms", "pause_us", "bytes", "rounds", "to_protected_ms"] {
        assert!(protected[field].is_u64(), "{field}: {protected}");
    }
    // An idle 64 MiB guest: zero pages cost next to nothing, and it is in
    // sync within seconds.
    assert!(
        protected["bytes"].as_u64().unwrap() < 8 << 20,
        "{protected}"
    );
    assert!(
        protected["to_protected_ms"].as_u64().unwrap() < 5000,
        "{protected}"
    );
    assert!(setup.arbiter_status().starts_with("generation 1, no owner"));
}

/// A 1 GiB guest: sending all of its memory takes long enough that a
/// failure during the transfer can be had at a random moment.
fn big(ticks: u64) -> Vec<String> {
    guest(ticks, &["--mem-mib", "1024"])
}

#[test]
fn a_standby_killed_mid_transfer_leaves_the_guest_whole_and_the_next_one_protects_it() {
    let _one = serial();
    let seed = seed();
    const TICKS: u64 = 100;
    let setup = PairSetup::new("rp-standby-dies");
    let (doomed, next) = (free_address(), free_address());
    let mut victim = setup.start_standby(doomed, &[], &[]);
    let survivor = setup.start_standby(next, &[], &[]);
    let primary = lone_primary(&setup, &big(TICKS), &[doomed, next]);
    wait_nth(&primary, "transfer_started", 1);
    thread::sleep(moment(seed, 0, 0, 150));
    victim.kill();
    let primary = primary.finish(TIMEOUT);
    let survivor = survivor.finish(TIMEOUT);
    let context = format!(
        "primary: {primary:#?}\nsurvivor: {survivor:#?}\nvictim: {}",
        victim.stderr.text()
    );
    assert_eq!(primary.code(), 0, "{context}");
    assert_every_tick(&primary.stdout, TICKS, &context);
    assert_eq!(
        transfers(&primary.events),
        [
            ("transfer_started".into(), doomed.to_string()),
            ("transfer_failed".into(), doomed.to_string()),
            ("transfer_started".into(), next.to_string()),
            ("protected".into(), next.to_string()),
        ],
        "{context}"
    );
    assert_eq!(survivor.code(), 0, "{context}");
}

#[test]
fn a_primary_killed_mid_transfer_leaves_the_standby_never_live() {
    let _one = serial();
    let seed = seed();
    let setup = PairSetup::new("rp-primary-dies");
    let address = free_address();
    let standby = setup.start_standby(address, &[], &[]);
    let mut primary = lone_primary(&setup, &big(200), &[address]);
    wait_nth(&primary, "transfer_started", 1);
    thread::sleep(moment(seed, 0, 0, 150));
    primary.kill();
    let standby = standby.finish(TIMEOUT);
    let context = format!(
        "standby: {standby:#?}\nprimary: {:#?}",
        primary.events.read()
    );
    assert!(
        primary
            .events
            .read()
            .iter()
            .all(|e| e["event"] != "protected"),
        "killed after the transfer: {context}"
    );
    assert_eq!(standby.code(), PAIRING_FAILURE, "{context}");
    assert_eq!(standby.stdout, "", "{context}");
    assert!(standby.event("live").is_none(), "{context}");
    // The primary still owns the first generation: nobody else can be live.
    let flag = setup.arbiter_status();
    assert!(flag.starts_with("generation 0, owner primary"), "{flag}");
}

#[test]
fn refused_standbys_are_passed_over_and_the_primary_carries_on() {
    let _one = serial();
    const TICKS: u64 = 60;
    let setup = PairSetup::new("rp-refused");
    let image = |name: &str, fill: u8| {
        let path = setup.dir.join(name);
        std::fs::write(&path, vec![fill; 512 * 64]).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (shared, other, smaller) = (image("shared.img", 0), image("other.img", 7), {
        let path = setup.dir.join("small.img");
        std::fs::write(&path, vec![0; 512 * 32]).unwrap();
        path.to_str().unwrap().to_owned()
    });
    let wrong_key = setup.dir.join("wrong-key");
    std::fs::write(&wrong_key, b"another key, also long enough....").unwrap();
    let addresses: Vec<SocketAddr> = (0..4).map(|_| free_address()).collect();
    // A standby with another key, one with another image of the same size,
    // one with a smaller image, and a good one, tried in that order.
    let mut with_wrong_key = {
        let mut args = setup.standby_args(addresses[0], &[], &["--disk", &shared]);
        let key = args.iter().position(|a| a == "--auth-key").unwrap() + 1;
        args[key] = wrong_key.to_str().unwrap().into();
        common::standby::listening(Side::start(&args), addresses[0])
    };
    let other_disk = setup.start_standby(addresses[1], &[], &["--disk", &other]);
    let small_disk = setup.start_standby(addresses[2], &[], &["--disk", &smaller]);
    let good = setup.start_standby(addresses[3], &[], &["--disk", &shared]);
    let primary = lone_primary(&setup, &guest(TICKS, &["--disk", &shared]), &addresses);
    let primary = primary.finish(TIMEOUT);
    let other_disk = other_disk.finish(TIMEOUT);
    let small_disk = small_disk.finish(TIMEOUT);
    let good = good.finish(TIMEOUT);
    let context = format!(
        "primary: {primary:#?}\nother disk: {other_disk:#?}\nsmall disk: {small_disk:#?}\ngood: {good:#?}"
    );
    assert_eq!(primary.code(), 0, "{context}");
    assert_every_tick(&primary.stdout, TICKS, &context);
    // Each refused standby failed (the list is tried again from its start
    // after a transfer that got as far as the cutover), the good one never.
    let failed: std::collections::BTreeSet<String> = primary
        .events
        .iter()
        .filter(|e| e["event"] == "transfer_failed")
        .map(|e| e["peer"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        failed,
        addresses[..3].iter().map(SocketAddr::to_string).collect(),
        "{context}"
    );
    let protected = primary.event("protected").expect("protected");
    assert_eq!(protected["peer"], addresses[3].to_string(), "{context}");
    // Another image is refused with 113 whether its size or its contents
    // differ; the wrong key is refused at the handshake, and that standby
    // keeps listening.
    for refused in [&other_disk, &small_disk] {
        assert_eq!(refused.code(), INVALID_DISK, "{context}");
        assert!(refused.event("live").is_none(), "{context}");
    }
    assert!(with_wrong_key.child_running(), "{context}");
    assert!(
        with_wrong_key.stderr.text().contains("authentication"),
        "{}",
        with_wrong_key.stderr.text()
    );
    with_wrong_key.kill();
    assert_eq!(good.code(), 0, "{context}");
}

#[test]
fn garbage_is_skipped_and_leaves_a_standby_listening() {
    let _one = serial();
    const TICKS: u64 = 60;
    let setup = PairSetup::new("rp-garbage");
    // An address that answers garbage to whoever connects.
    let liar = TcpListener::bind("127.0.0.1:0").unwrap();
    let lying = liar.local_addr().unwrap();
    thread::spawn(move || {
        let mut state = 0x1234_5678_9abc_def0;
        for mut stream in liar.incoming().flatten() {
            let _ = stream.write_all(&noise(200, &mut state));
        }
    });
    let address = free_address();
    let standby = setup.start_standby(address, &[], &[]);
    // Random bytes on the standby's port: it refuses them and listens on.
    for seed in 1..=3u64 {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        let mut state = seed;
        let _ = stream.write_all(&noise(64, &mut state));
        let mut answer = Vec::new();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.read_to_end(&mut answer);
    }
    assert!(standby.child_running(), "{}", standby.stderr.text());
    let primary = lone_primary(&setup, &guest(TICKS, &[]), &[lying, address]);
    let primary = primary.finish(TIMEOUT);
    let standby = standby.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nstandby: {standby:#?}");
    assert_eq!(primary.code(), 0, "{context}");
    let failed = primary.event("transfer_failed").expect("transfer_failed");
    assert_eq!(failed["peer"], lying.to_string(), "{context}");
    let protected = primary.event("protected").expect("protected");
    assert_eq!(protected["peer"], address.to_string(), "{context}");
    assert_eq!(standby.code(), 0, "{context}");
}

#[test]
fn a_standby_refuses_a_new_pair_and_waits_on() {
    let _one = serial();
    const TICKS: u64 = 40;
    let setup = PairSetup::new("rp-standby-refuses");
    let address = free_address();
    let standby = setup.start_standby(address, &[], &[]);
    // A primary forming a new pair, aimed at a standby: refused at once.
    let mut args = setup.primary_args(&refs(&ticker(TICKS)), &setup.key);
    args[2] = address.to_string();
    let refused = Side::start(&args).finish(TIMEOUT);
    assert_eq!(refused.code(), PAIRING_FAILURE, "{refused:#?}");
    assert!(standby.child_running(), "{}", standby.stderr.text());
    // The standby still takes a live side's guest.
    let primary = lone_primary(&setup, &ticker(TICKS), &[address]).finish(TIMEOUT);
    assert_eq!(primary.code(), 0, "{primary:#?}");
    assert!(primary.event("protected").is_some(), "{primary:#?}");
    assert_eq!(standby.finish(TIMEOUT).code(), 0);
}

#[test]
fn a_backup_refuses_a_running_vm_and_waits_for_its_primary() {
    let _one = serial();
    const TICKS: u64 = 40;
    let setup = PairSetup::new("rp-backup-refuses");
    let backup = common::standby::listening(
        Side::start(&setup.backup_args(&refs(&ticker(TICKS)))),
        setup.address,
    );
    // A live side of another flag, aimed at the backup by mistake.
    let elsewhere = PairSetup::new("rp-backup-refuses-2");
    let stray = lone_primary(&elsewhere, &ticker(TICKS), &[setup.address]).finish(TIMEOUT);
    assert_eq!(stray.code(), 0, "{stray:#?}");
    let failed = stray.event("transfer_failed").expect("transfer_failed");
    assert_eq!(failed["peer"], setup.address.to_string(), "{stray:#?}");
    assert!(backup.child_running(), "{}", backup.stderr.text());
    // Its own primary pairs with it as usual.
    let primary = setup.start_primary(&refs(&ticker(TICKS))).finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    assert_eq!(primary.code(), 0, "{primary:#?}");
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert_every_tick(&primary.stdout, TICKS, "the pair after a stray live side");
}

#[test]
fn the_demo_shows_two_takeovers_and_a_reprotection_between_them() {
    let _one = serial();
    let demo = common::demo(
        &[
            "--failures",
            "2",
            "--kill-after-ms",
            "600",
            "--ticks",
            "120",
        ],
        &[
            "STANDBY 1",
            "[killed with SIGKILL]",
            "live from exit",
            "protected by",
            "2 failures, 2 takeovers",
            "protected again in",
        ],
    );
    // Each side's column takes up where the one before stopped: together,
    // every tick.
    let ticks = common::demo_ticks(&demo.stdout, 3);
    assert_eq!(ticks, (1..=120).collect::<Vec<_>>(), "{demo:#?}");
}
