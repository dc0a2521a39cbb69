//! Primary/backup pairs of real ftvm processes on this machine: takeover
//! keeps the guest's output whole, a lost backup lets the primary go on
//! alone, bad peers are refused, the go-live flag decides.
//!
//! Pairs are run one at a time (docs/DESIGN.md §8): two cores, timing matters.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::metrics::{Scrape, scrape};
use common::pair::{
    NOT_LIVE, PairSetup, Side, assert_whole, flood, free_address, join_outputs, moment, noise,
    seed, serial, ticker,
};

const ARBITER_FAILURE: i32 = 114;
const PAIRING_FAILURE: i32 = 115;
const DIVERGENCE: i32 = 118;
const USAGE: i32 = 125;
const INTERRUPTED: i32 = 130;
const TERMINATED: i32 = 143;

/// A ticker that runs until it is stopped.
const ENDLESS: [&str; 4] = ["--kernel", "ticker", "--cmdline", "ticks=100000 hz=50"];

/// Sends `signal` to `side` and checks that it ends within a second with
/// `status`.
fn stops_at_once(side: Side, signal: i32, status: i32) -> common::Finished {
    side.signal(signal);
    let signalled = std::time::Instant::now();
    let out = side.finish(TIMEOUT);
    let took = signalled.elapsed();
    assert_eq!(out.code(), status, "{out:#?}");
    assert!(took < Duration::from_secs(1), "took {took:?}: {out:#?}");
    out
}

#[test]
fn a_pair_ends_together_when_the_guest_ends() {
    let _one = serial();
    let setup = PairSetup::new("ft-together");
    let backup = setup.start_backup(&ticker());
    let primary = setup.start_primary(&ticker());
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    assert_eq!(primary.code(), 0, "{primary:#?}");
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert_whole(&primary.stdout, "the primary's console");
    assert_eq!(
        backup.stdout, "",
        "a backup that never went live prints nothing"
    );
    assert!(
        setup.arbiter_status().contains("no owner"),
        "nobody took the flag"
    );
}

#[test]
fn takeover_keeps_the_output_whole_at_random_moments() {
    let _one = serial();
    let seed = seed();
    let mut takeovers = 0;
    for run in 0..10u64 {
        let setup = PairSetup::new(&format!("ft-takeover-{run}"));
        let backup = setup.start_backup(&ticker());
        let mut primary = setup.start_primary(&ticker());
        assert!(primary.wait_event("paired"), "{}", primary.stderr.text());
        // 40 ticks at 50 Hz take 0.8 s: kill anywhere in 0.05–0.85 s, so
        // also after the guest ended, when the primary may or may not have
        // said goodbye.
        let moment = moment(seed, run, 50, 800);
        thread::sleep(moment);
        primary.kill();
        let released = primary.stdout.text();
        let backup = backup.finish(TIMEOUT);
        let context = format!(
            "run {run}, killed after {moment:?}\nprimary released:\n{released}\nbackup: {backup:#?}"
        );
        assert_eq!(backup.code(), 0, "{context}");
        assert_whole(&join_outputs(&released, &backup.stdout), &context);
        let flag = setup.arbiter_status();
        if backup.event("live").is_some() {
            takeovers += 1;
            assert!(flag.contains("backup"), "{context}");
        } else if backup.event("peer_lost").is_some() {
            // The guest ended; its last output may not have been released.
            assert!(flag.contains("backup"), "{context}");
        } else {
            // The primary ended and said goodbye: it released everything.
            assert_eq!(backup.stdout, "", "{context}");
            assert!(flag.contains("no owner"), "{context}");
        }
    }
    assert!(
        takeovers >= 7,
        "only {takeovers} of 10 kills came while the guest ran"
    );
}

#[test]
fn a_primary_killed_as_its_guest_ends_leaves_the_backup_to_finish() {
    // Killed as soon as its console shows the last tick, the primary often
    // dies after the guest's last exit but before its end record went out:
    // the backup has replayed the whole run and must finish it, not fail.
    let _one = serial();
    for run in 0..5 {
        let setup = PairSetup::new(&format!("ft-killed-at-end-{run}"));
        let backup = setup.start_backup(&ticker());
        let mut primary = setup.start_primary(&ticker());
        assert!(primary.stdout.wait_for("tick 40", TIMEOUT), "run {run}");
        primary.kill();
        let released = primary.stdout.text();
        let backup = backup.finish(TIMEOUT);
        let context = format!("run {run}\nprimary released:\n{released}\nbackup: {backup:#?}");
        assert_eq!(backup.code(), 0, "{context}");
        assert_whole(&join_outputs(&released, &backup.stdout), &context);
    }
}

#[test]
fn a_primary_whose_backup_dies_goes_on_alone_after_winning_the_flag() {
    let _one = serial();
    let setup = PairSetup::new("ft-backup-dies");
    let mut backup = setup.start_backup(&ticker());
    let primary = setup.start_primary(&ticker());
    assert!(primary.wait_event("paired"));
    thread::sleep(Duration::from_millis(300));
    backup.kill();
    let primary = primary.finish(TIMEOUT);
    assert_eq!(primary.code(), 0, "{primary:#?}");
    assert_eq!(
        primary.event_names(),
        ["started", "paired", "peer_lost", "ended"],
        "{primary:#?}"
    );
    assert_whole(&primary.stdout, "the primary alone");
    assert!(setup.arbiter_status().contains("primary"));
}

#[test]
fn a_primary_without_a_backup_runs_alone_only_with_the_flag() {
    let _one = serial();
    let setup = PairSetup::new("ft-no-backup");
    let mut args = setup.primary_args(&ticker(), &setup.key);
    args.extend(["--wait-backup-ms".into(), "300".into()]);
    let alone = Side::start(&args).finish(TIMEOUT);
    assert_eq!(alone.code(), 0, "{alone:#?}");
    assert_whole(&alone.stdout, "alone");
    // The flag is now taken: a second primary of the same generation may not run.
    let second = Side::start(&args).finish(TIMEOUT);
    assert_eq!(second.code(), NOT_LIVE, "{second:#?}");
    assert_eq!(second.stdout, "");
}

#[test]
fn a_wrong_key_is_refused_and_the_backup_keeps_waiting() {
    let _one = serial();
    let setup = PairSetup::new("ft-wrong-key");
    let backup = setup.start_backup(&ticker());
    let wrong = setup.dir.join("wrong-key");
    std::fs::write(&wrong, b"another key, also long enough....").unwrap();
    let intruder = Side::start(&setup.primary_args(&ticker(), &wrong)).finish(TIMEOUT);
    assert_eq!(intruder.code(), PAIRING_FAILURE, "{intruder:#?}");
    assert_eq!(intruder.stderr.lines().count(), 1, "{intruder:#?}");
    assert!(intruder.stderr.contains("authentication"), "{intruder:#?}");
    // The backup refused it and still pairs with the real primary.
    let primary = setup.start_primary(&ticker()).finish(TIMEOUT);
    assert_eq!(primary.code(), 0, "{primary:#?}");
    assert_whole(&primary.stdout, "after a refused intruder");
    let backup = backup.finish(TIMEOUT);
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert!(backup.stderr.contains("authentication"), "{backup:#?}");
}

#[test]
fn a_backup_with_another_kernel_refuses_the_primary() {
    let _one = serial();
    let setup = PairSetup::new("ft-other-kernel");
    let backup = setup.start_backup(&["--kernel", "hello"]);
    let primary = setup.start_primary(&ticker()).finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    for side in [&primary, &backup] {
        assert_eq!(side.code(), PAIRING_FAILURE, "{side:#?}");
        assert!(side.stderr.contains("kernel"), "{side:#?}");
        assert_eq!(side.stdout, "");
    }
}

#[test]
fn garbage_on_the_logging_port_does_not_disturb_a_running_pair() {
    use std::io::Write;
    let _one = serial();
    let setup = PairSetup::new("ft-garbage");
    let backup = setup.start_backup(&ticker());
    let primary = setup.start_primary(&ticker());
    assert!(primary.wait_event("paired"));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..5 {
        let mut stream = std::net::TcpStream::connect(setup.address).unwrap();
        let bytes = noise(4096, &mut state);
        // Half the rounds close in the middle of what could be a message.
        let cut = if round % 2 == 0 { bytes.len() } else { 7 };
        let _ = stream.write_all(&bytes[..cut]);
        drop(stream);
        thread::sleep(Duration::from_millis(50));
    }
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    assert_eq!(primary.code(), 0, "{primary:#?}");
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert_whole(&primary.stdout, "with garbage on the port");
    assert_eq!(backup.stdout, "");
}

#[test]
fn a_primary_pairs_through_a_flood_on_the_backups_port() {
    let _one = serial();
    let setup = PairSetup::new("ft-flood-waiting");
    let backup = setup.start_backup(&ticker());
    let held = flood(setup.address, 300);
    // Shorter than a handshake's deadline: strangers that could hold the
    // handshake slots until theirs ran out would keep the pair from forming.
    let mut args = setup.primary_args(&ticker(), &setup.key);
    args.extend(["--wait-backup-ms".into(), "3000".into()]);
    let primary = Side::start(&args).finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    drop(held);
    let context = format!("primary: {primary:#?}\nbackup: {backup:#?}");
    assert_eq!(primary.code(), 0, "{context}");
    assert!(primary.event("paired").is_some(), "{context}");
    assert_whole(&primary.stdout, &context);
    assert_eq!(backup.code(), 0, "{context}");
    assert_eq!(backup.stdout, "", "{context}");
    assert!(
        setup.arbiter_status().contains("no owner"),
        "nobody ran alone: {context}"
    );
}

#[test]
fn a_flood_on_the_logging_port_does_not_disturb_a_running_pair() {
    let _one = serial();
    let setup = PairSetup::new("ft-flood-running");
    let backup = setup.start_backup(&ticker());
    let primary = setup.start_primary(&ticker());
    assert!(primary.wait_event("paired"));
    let held = flood(setup.address, 300);
    assert!(primary.child_running(), "the flood came after the run");
    let primary = primary.finish(TIMEOUT);
    let backup = backup.finish(TIMEOUT);
    drop(held);
    let context = format!("primary: {primary:#?}\nbackup: {backup:#?}");
    assert_eq!(primary.code(), 0, "{context}");
    assert_whole(&primary.stdout, &context);
    assert_eq!(backup.code(), 0, "{context}");
    assert_eq!(backup.stdout, "", "{context}");
    assert!(primary.event("peer_lost").is_none(), "{context}");
}

#[test]
fn nobody_goes_live_while_the_arbiter_is_out_of_reach() {
    let _one = serial();
    let setup = PairSetup::new("ft-held-flag");
    let backup = setup.start_backup(&ticker());
    let mut primary = setup.start_primary(&ticker());
    assert!(primary.wait_event("paired"));
    thread::sleep(Duration::from_millis(200));
    let held = common::pair::HeldFlag::hold(&setup.arbiter);
    primary.kill();
    let released = primary.stdout.text();
    // The backup detects the loss and drains, then waits for the flag.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        backup.stdout.text(),
        "",
        "went live while the flag was held"
    );
    assert!(
        backup.child_running(),
        "the backup gave up instead of waiting"
    );
    drop(held);
    let backup = backup.finish(TIMEOUT);
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert_whole(
        &join_outputs(&released, &backup.stdout),
        "after the flag was released",
    );
}

#[test]
fn the_demo_shows_the_backup_taking_over() {
    let _one = serial();
    let demo = common::demo(
        &["--kill-after-ms", "800", "--ticks", "60"],
        &[
            "[killed with SIGKILL]",
            "live from exit",
            "the backup took over",
        ],
    );
    // The primary's column, then the backup's from where the primary
    // stopped (it may repeat lines the primary released), hold every tick.
    let ticks = common::demo_ticks(&demo.stdout, 2);
    assert_eq!(ticks, (1..=60).collect::<Vec<_>>(), "{demo:#?}");
}

#[test]
fn a_backup_that_diverges_stops_and_never_goes_live() {
    let _one = serial();
    let setup = PairSetup::new("ft-diverge");
    let elf = common::assemble_guest("rdtsc", &setup.dir);
    let guest = ["--kernel", elf.to_str().unwrap()];
    let backup = setup.start_backup(&guest);
    let primary = setup.start_primary(&guest);
    let backup = backup.finish(TIMEOUT);
    let primary = primary.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nbackup: {backup:#?}");
    assert_eq!(backup.code(), DIVERGENCE, "{context}");
    assert_eq!(
        backup.event_names(),
        ["started", "paired", "diverged", "ended"],
        "{context}"
    );
    let diverged = backup.event("diverged").unwrap();
    assert!(diverged["exit"].as_u64().is_some(), "{context}");
    assert!(
        diverged["what"]
            .as_str()
            .is_some_and(|what| what.starts_with("divergence at exit")),
        "{context}"
    );
    assert_eq!(backup.event("ended").unwrap()["status"], DIVERGENCE);
    assert_eq!(
        backup.stdout, "",
        "a diverged backup emits nothing: {context}"
    );
    // The primary loses its backup, wins the flag and finishes alone.
    assert_eq!(primary.code(), 0, "{context}");
    assert_eq!(primary.stdout, "done\n", "{context}");
    assert!(setup.arbiter_status().contains("primary"), "{context}");
}

#[test]
fn a_damaged_flag_is_refused_at_start_and_waited_for_after_pairing() {
    let _one = serial();
    let setup = PairSetup::new("ft-damaged-flag");
    let valid = std::fs::read(&setup.arbiter).unwrap();
    let garbage = noise(92, &mut 0x1234_5678_9abc_def0);
    std::fs::write(&setup.arbiter, &garbage).unwrap();
    for args in [
        setup.backup_args(&ticker()),
        setup.primary_args(&ticker(), &setup.key),
    ] {
        let out = Side::start(&args).finish(TIMEOUT);
        out.assert_refused(ARBITER_FAILURE, "not a valid go-live flag");
    }
    std::fs::write(&setup.arbiter, &valid).unwrap();
    let backup = setup.start_backup(&ticker());
    let mut primary = setup.start_primary(&ticker());
    assert!(primary.wait_event("paired"));
    thread::sleep(Duration::from_millis(200));
    std::fs::write(&setup.arbiter, &garbage).unwrap();
    primary.kill();
    let released = primary.stdout.text();
    // Like an unreachable flag: it waits, says why, and never goes live.
    assert!(
        backup.stderr.wait_for("not a valid go-live flag", TIMEOUT),
        "{}",
        backup.stderr.text()
    );
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(backup.stdout.text(), "", "went live without a valid flag");
    assert!(
        backup.child_running(),
        "the backup gave up instead of waiting"
    );
    std::fs::write(&setup.arbiter, &valid).unwrap();
    let backup = backup.finish(TIMEOUT);
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert_whole(
        &join_outputs(&released, &backup.stdout),
        "after the flag was repaired",
    );
}

#[test]
fn a_listen_address_in_use_is_a_usage_error() {
    let _one = serial();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let setup = PairSetup::at("ft-listen-in-use", taken.local_addr().unwrap());
    let out = Side::start(&setup.backup_args(&ticker())).finish(TIMEOUT);
    out.assert_refused(USAGE, "cannot listen on");
}

#[test]
fn sides_waiting_for_their_peer_stop_at_once_on_a_signal() {
    let _one = serial();
    let setup = PairSetup::new("ft-waiting-signal");
    let backup = setup.start_backup(&ticker());
    let out = stops_at_once(backup, libc::SIGINT, INTERRUPTED);
    assert!(out.stderr.contains("interrupted"), "{out:#?}");
    // Nobody listens now: the primary waits for its backup.
    let mut args = setup.primary_args(&ticker(), &setup.key);
    args.extend(["--wait-backup-ms".into(), "60000".into()]);
    let primary = Side::start(&args);
    thread::sleep(Duration::from_millis(500));
    let out = stops_at_once(primary, libc::SIGTERM, TERMINATED);
    assert!(out.stderr.contains("terminated"), "{out:#?}");
    assert!(setup.arbiter_status().contains("no owner"));
}

#[test]
fn a_primary_stalled_by_flow_control_stops_at_once_on_sigterm() {
    let _one = serial();
    let setup = PairSetup::new("ft-stalled-signal");
    // A timeout long enough that a frozen backup is not taken for lost.
    let patient = ["--timeout-ms", "30000"].map(String::from);
    let mut backup_args = setup.backup_args(&ENDLESS);
    backup_args.extend(patient.clone());
    let mut backup = PairSetup::started(Side::start(&backup_args));
    let mut primary_args = setup.primary_args(&ENDLESS, &setup.key);
    primary_args.extend(patient);
    let primary = Side::start(&primary_args);
    assert!(primary.stdout.wait_for("tick 3 ", TIMEOUT));
    backup.signal(libc::SIGSTOP);
    // The backup's replay stops: past --max-lag-ms the primary stalls.
    thread::sleep(Duration::from_millis(1000));
    let stalled_at = primary.stdout.text().len();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(primary.stdout.text().len(), stalled_at, "it did not stall");
    // The stall is counted as it lasts, not only once it ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stalled_ms = || {
        let events = primary.events.read();
        let last = events.iter().rev().find(|e| e["event"] == "progress");
        last.and_then(|e| e["stall_ms"].as_u64()).unwrap_or(0)
    };
    while stalled_ms() < 500 {
        assert!(Instant::now() < deadline, "no stall in the progress events");
        thread::sleep(Duration::from_millis(50));
    }
    stops_at_once(primary, libc::SIGTERM, TERMINATED);
    backup.signal(libc::SIGCONT);
    backup.kill();
}

#[test]
fn a_replaying_backup_stops_at_once_on_sigterm() {
    let _one = serial();
    let setup = PairSetup::new("ft-backup-signal");
    let backup = setup.start_backup(&ENDLESS);
    let primary = setup.start_primary(&ENDLESS);
    assert!(primary.stdout.wait_for("tick 3 ", TIMEOUT));
    stops_at_once(backup, libc::SIGTERM, TERMINATED);
    // Its primary loses it, and goes on alone after winning the flag.
    assert!(primary.wait_event("peer_lost"));
    let tick = primary.stdout.text().matches("tick ").count();
    assert!(
        primary
            .stdout
            .wait_for(&format!("tick {} ", tick + 5), TIMEOUT)
    );
    stops_at_once(primary, libc::SIGTERM, TERMINATED);
}

/// Scrapes `address` until `wanted` holds.
fn scrape_until(address: std::net::SocketAddr, wanted: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(scrape) = scrape(address).filter(|s| wanted(s)) {
            return scrape;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such metrics at {address}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_takeover_shows_in_the_event_streams_and_the_metrics() {
    let _one = serial();
    let setup = PairSetup::new("ft-observed");
    let guest = ["--kernel", "ticker", "--cmdline", "ticks=150 hz=50"];
    let (backup_at, primary_at) = (free_address(), free_address());
    let with_metrics = |mut args: Vec<String>, at: std::net::SocketAddr| {
        args.extend(["--metrics".into(), at.to_string()]);
        args
    };
    let backup = PairSetup::started(Side::start(&with_metrics(
        setup.backup_args(&guest),
        backup_at,
    )));
    let mut primary = Side::start(&with_metrics(
        setup.primary_args(&guest, &setup.key),
        primary_at,
    ));
    assert!(primary.wait_event("paired"), "{}", primary.stderr.text());
    assert!(backup.wait_event("paired"), "{}", backup.stderr.text());

    // Both sides paired, both counting exits.
    for (at, role) in [(primary_at, "primary"), (backup_at, "backup")] {
        let first = scrape_until(at, |s| s.value("ftvm_exits_total") > Some(0.0));
        first.assert_promtool_clean();
        assert_eq!(first.content_type, "text/plain; version=0.0.4");
        assert_eq!(first.role().as_deref(), Some(role), "{}", first.body);
        assert_eq!(first.value("ftvm_paired"), Some(1.0), "{}", first.body);
        assert_eq!(first.value("ftvm_protected"), Some(1.0), "{}", first.body);
        let exits = first.value("ftvm_exits_total").unwrap();
        let later = scrape_until(at, |s| s.value("ftvm_exits_total") > Some(exits));
        assert!(
            later.value("ftvm_log_bytes_total") > Some(0.0),
            "{}",
            later.body
        );
    }
    primary.kill();

    // The backup takes over: its role changes, the takeover is counted.
    assert!(backup.wait_event("live"), "{}", backup.stderr.text());
    let after = scrape_until(backup_at, |s| s.role().as_deref() == Some("alone"));
    after.assert_promtool_clean();
    assert_eq!(
        after.value("ftvm_takeovers_total"),
        Some(1.0),
        "{}",
        after.body
    );
    assert_eq!(after.value("ftvm_paired"), Some(0.0), "{}", after.body);
    assert_eq!(after.value("ftvm_divergences_total"), Some(0.0));

    let backup = backup.finish(TIMEOUT);
    assert_eq!(backup.code(), 0, "{backup:#?}");
    assert_eq!(
        backup.event_names(),
        ["started", "paired", "peer_lost", "live", "ended"],
        "{backup:#?}"
    );
    assert_eq!(backup.events[0]["role"], "backup");
    let live = backup.event("live").unwrap();
    for field in [
        "exit",
        "detection_ms",
        "drain_ms",
        "golive_ms",
        "reemitted_console_bytes",
        "reemitted_frames",
        "reissued_requests",
    ] {
        assert!(live[field].is_u64(), "{field}: {live}");
    }
    let ended = backup.event("ended").unwrap();
    assert_eq!(ended["status"], 0, "{ended}");
    assert_eq!(ended["reason"], "the guest exited with 0", "{ended}");
    // Killed: the primary's stream stops where it was.
    let primary_events = common::events::names(&primary.events.read());
    assert_eq!(primary_events, ["started", "paired"]);
}
