//! A client's TCP connection to `kvstore` under a primary/backup pair on
//! two hosts survives the primary's host being killed: no reset, every
//! acknowledged key readable afterwards, and on the shared disk.
//!
//! Pairs run one at a time (docs/DESIGN.md §8).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::hosts::Hosts;
use common::lan::{Connection, fresh_disk, kvstore};
use common::pair::{host_name, moment, seed, serial};

/// How long a SET may wait: a takeover takes the timeout, the replay of
/// what the backup received, and TCP's retransmission backoff.
const PATIENCE: Duration = Duration::from_secs(20);
/// SETs acknowledged after the takeover before the client stops.
const AFTER: u64 = 20;

#[test]
fn a_client_connection_survives_takeover_with_every_acknowledged_key() {
    let _one = serial();
    let seed = seed();
    for run in 0..5 {
        let hosts = Hosts::up(&host_name(&format!("tcp{run}")));
        let setup = hosts.setup(&format!("ft-net-{run}"));
        let disk = fresh_disk(&setup.dir);
        let (mut backup, primary) = hosts.serving_pair(&setup, &kvstore(&disk));
        let mut client = Connection::open(&hosts.namespace('c'), PATIENCE);
        let moment = moment(seed, run, 200, 1500);
        let started = Instant::now();
        let mut killed_after = None;
        let mut acked = 0u64;
        let mut longest = Duration::ZERO;
        let mut primary = Some(primary);
        loop {
            if killed_after.is_none() && started.elapsed() >= moment {
                hosts.takeover("kill");
                killed_after = Some(acked);
            }
            let asked = Instant::now();
            let reply = client.call(&format!("SET key{acked} value{acked}"));
            longest = longest.max(asked.elapsed());
            let context = format!(
                "run {run}: SET key{acked} (killed after {moment:?}, {killed_after:?} acked then)"
            );
            assert_eq!(
                reply.as_deref().map_err(|e| e.kind()),
                Ok("+OK"),
                "{context}"
            );
            acked += 1;
            if killed_after.is_some_and(|at| acked >= at + AFTER) {
                break;
            }
        }
        let primary = primary.take().unwrap().finish(TIMEOUT);
        assert!(
            !backup.stderr.text().contains("panicked"),
            "{}",
            backup.stderr.text()
        );
        assert!(
            backup.wait_event("live"),
            "run {run}: {}\nprimary: {primary:#?}",
            backup.stderr.text()
        );
        // The same connection reads every acknowledged key back.
        client.assert_keys(acked, &format!("run {run}"));
        eprintln!(
            "run {run}: {acked} SETs, longest {longest:?}, killed after {moment:?}\nprimary: {}\nbackup: {}",
            primary.stderr,
            backup.stderr.text()
        );
        client.close();
        backup.kill();
        // A fresh VM from the shared disk alone has every key.
        let mut fresh = hosts.boot_restoring('b', &disk, acked);
        let mut check = Connection::open(&hosts.namespace('c'), PATIENCE);
        let last = acked - 1;
        assert_eq!(
            check.call(&format!("GET key{last}")).unwrap(),
            format!("${}\r\nvalue{last}", format!("value{last}").len())
        );
        check.close();
        fresh.kill();
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_network_demo_shows_a_connection_carrying_on_across_the_takeover() {
    let _one = serial();
    common::demo(
        &["--net", "--kill-after-ms", "1000", "--sets-after", "10"],
        &[
            "client ▸ connected from 10.0.0.1",
            "[killed with SIGKILL]",
            "live from exit",
            "none lost",
            "the client's connection carried on",
        ],
    );
}

#[test]
fn the_new_primary_drops_what_queued_on_its_tap_and_announces_the_guests_mac() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("rarp"));
    let setup = hosts.setup("ft-net-rarp");
    let disk = fresh_disk(&setup.dir);
    let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    let mut guest = kvstore(&disk);
    let net = guest.iter().position(|arg| arg == "--net").unwrap() + 1;
    guest[net] = "tap=ftvm0,mac=52:54:00:12:34:56".into();
    let (mut backup, primary) = hosts.serving_pair(&setup, &guest);
    // Broadcasts (ARP for an address nobody has) reach both hosts' TAPs;
    // the backup's queues them unread until it goes live.
    let c = hosts.namespace('c');
    let arp = common::lan::client(&c, "nc", &["-z", "-w", "1", "10.0.0.77", "9"], b"");
    assert!(!arp.status.success(), "nobody is at 10.0.0.77: {arp:?}");
    let capture = common::lan::capture_rarp(&c, Duration::from_secs(3));
    hosts.takeover("kill");
    assert!(backup.wait_event("live"), "{}", backup.stderr.text());
    let seen = capture.join().unwrap();
    let live = backup.events.wait_for("live", TIMEOUT).unwrap();
    assert!(
        live["discarded_frames"].as_u64().is_some_and(|n| n > 0),
        "the frames queued on the backup's TAP reached the new primary's guest: {live}"
    );
    let announcements = seen.iter().filter(|source| **source == mac).count();
    assert!(
        announcements >= 3,
        "want several RARP announcements from {mac:02x?}, saw {seen:02x?}"
    );
    let _ = primary.finish(TIMEOUT);
    backup.kill();
}
