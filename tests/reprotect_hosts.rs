//! Re-protection across three hosts in network namespaces
//! (`scripts/two-hosts.sh`, failed by `scripts/takeover.sh`): `kvstore`
//! and a client's connection through three failures of the live host, a
//! joined backup checking every digest while `kvstore` reads its disk and
//! serves, a joined backup on a busy host, and a split brain of a
//! re-protected pair.
//!
//! Pairs run one at a time (docs/DESIGN.md §8).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::disk::{records_on, seq_guest};
use common::hosts::{Hosts, address};
use common::lan::{Connection, fresh_disk, kvstore, prefilled_disk, prefilled_value};
use common::pair::{
    NOT_LIVE, PairSetup, Side, host_name, join_outputs, moment, seed, serial, tick_numbers,
};
use common::standby::{reprotect, wait_nth};
use common::{CpuHogs, TIMEOUT};

/// How long a request may wait: a takeover takes the timeout, the replay of
/// what the backup received, and TCP's retransmission backoff.
const PATIENCE: Duration = Duration::from_secs(20);
const DIGESTS: &str = "1000";

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Starts `args` plus `--reprotect` to the standbys of `hosts`, in host `host`.
fn start(hosts: &Hosts, host: char, mut args: Vec<String>, standbys: &[char]) -> Side {
    args.extend(reprotect(
        &standbys.iter().map(|&h| address(h)).collect::<Vec<_>>(),
    ));
    Side::start_in(&hosts.namespace(host), &args)
}

/// A primary of `guest` plus `extra` in host a with no backup (nothing
/// answers on the client's host): it runs alone from the start and sends
/// its guest at once to the first of `standbys` that answers.
fn alone_in_a(
    hosts: &Hosts,
    setup: &PairSetup,
    guest: &[String],
    extra: &[&str],
    standbys: &[char],
) -> Side {
    let mut args = setup.primary_args(&refs(guest), &setup.key);
    args[2] = "10.99.0.3:7000".into();
    args.extend(
        ["--wait-backup-ms", "100"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
    );
    start(hosts, 'a', args, standbys)
}

/// `kvstore` on a disk of 600 keys (restoring them takes it seconds here),
/// and a standby for it in each of `hosts_of_standbys`.
fn kvstore_of_600_keys<const N: usize>(
    hosts: &Hosts,
    setup: &PairSetup,
    hosts_of_standbys: [char; N],
) -> (Vec<String>, [Side; N]) {
    let disk = prefilled_disk(&setup.dir, 600);
    let disk_path = disk.to_str().unwrap();
    let devices = ["--disk", disk_path, "--net", "tap=ftvm0"];
    let standbys = hosts_of_standbys.map(|host| hosts.start_standby(setup, host, &[], &devices));
    (kvstore(&disk), standbys)
}

#[test]
fn kvstore_and_its_client_survive_three_failures_of_the_live_host() {
    let _one = serial();
    let seed = seed();
    let hosts = Hosts::up(&host_name("rpkv"));
    let setup = hosts.setup("rp-kv-three");
    let disk = fresh_disk(&setup.dir);
    let guest = kvstore(&disk);
    let disk_path = disk.to_str().unwrap().to_owned();
    let devices = ["--disk", &disk_path, "--net", "tap=ftvm0"];
    // A standby on d; every side protects itself with the hosts it is not on.
    let standby_d = hosts.start_standby(&setup, 'd', &['a', 'b'], &devices);
    let backup = PairSetup::started(start(
        &hosts,
        'b',
        setup.backup_args(&refs(&guest)),
        &['d', 'a'],
    ));
    let primary = start(
        &hosts,
        'a',
        setup.primary_args(&refs(&guest), &setup.key),
        &['d', 'b'],
    );
    assert!(
        primary.stdout.wait_for("listening on", TIMEOUT),
        "{}",
        primary.stderr.text()
    );
    let mut client = Connection::open(&hosts.namespace('c'), PATIENCE);
    // Kill the live host three times: the primary's (a), then the backup's
    // (b), whose guest went on in d; a comes back as a standby in between.
    let mut next_kill = Some(Instant::now() + moment(seed, 0, 200, 800));
    let mut kills = 0;
    let mut standby_a: Option<Side> = None;
    let mut acked = 0u64;
    let mut after_last = None;
    let mut longest = Duration::ZERO;
    loop {
        if next_kill.is_some_and(|at| Instant::now() >= at) {
            next_kill = None;
            hosts.fail("kill", ['a', 'b', 'd'][kills]);
            kills += 1;
            if kills == 3 {
                after_last = Some(acked);
            }
        }
        // Once the new primary is protected again, the next kill is due.
        if next_kill.is_none() && kills < 3 {
            let live = match kills {
                1 => &backup,
                _ => &standby_d,
            };
            if live.events.read().iter().any(|e| e["event"] == "protected") {
                if kills == 1 {
                    standby_a = Some(hosts.start_standby(&setup, 'a', &['b', 'd'], &devices));
                }
                next_kill = Some(Instant::now() + moment(seed, kills as u64, 200, 800));
            }
        }
        let asked = Instant::now();
        let reply = client.call(&format!("SET key{acked} value{acked}"));
        longest = longest.max(asked.elapsed());
        assert_eq!(
            reply.as_deref().map_err(|e| e.kind()),
            Ok("+OK"),
            "SET key{acked}, after {kills} kills"
        );
        acked += 1;
        if after_last.is_some_and(|at| acked >= at + 20) {
            break;
        }
        assert!(
            acked < 5000,
            "the kills never came: {}",
            backup.stderr.text()
        );
    }
    // The same connection reads every acknowledged key back from the guest,
    // now in host a, on its fourth host process.
    client.assert_keys(acked, "after three failures");
    client.close();
    let last = standby_a.expect("a standby on a");
    let events = last.events.read();
    assert!(
        events.iter().any(|e| e["event"] == "live")
            && events.iter().all(|e| e["event"] != "diverged"),
        "{events:#?}"
    );
    eprintln!("{acked} SETs through three failures, longest {longest:?}");
    let flag = setup.arbiter_status();
    assert!(flag.starts_with("generation 2, owner standby"), "{flag}");
    hosts.fail("kill", 'a');
    drop(last);
    // A fresh VM from the shared disk alone has every key.
    hosts.boot_restoring('b', &disk, acked);
}

#[test]
fn joined_backups_check_every_digest_while_kvstore_reads_its_disk_and_serves() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("rpex"));
    let setup = hosts.setup("rp-kv-exact");
    let (guest, [mut first, second]) = kvstore_of_600_keys(&hosts, &setup, ['d', 'b']);
    let primary = alone_in_a(
        &hosts,
        &setup,
        &guest,
        &["--digest-every", DIGESTS],
        &['d', 'b'],
    );
    let protected = wait_nth(&primary, "protected", 1);
    assert_eq!(protected["peer"], address('d').to_string());
    assert!(
        !primary.stdout.text().contains("restored"),
        "the transfer came after kvstore read its log: {}",
        primary.stdout.text()
    );
    assert!(primary.stdout.wait_for("listening on", TIMEOUT));
    let mut client = Connection::open(&hosts.namespace('c'), PATIENCE);
    let mut requests = 0u64;
    let mut serve = |client: &mut Connection, count: u64| {
        for _ in 0..count {
            let i = requests;
            assert_eq!(client.call(&format!("SET new{i} {i}")).unwrap(), "+OK");
            let old = prefilled_value(i % 600);
            assert_eq!(
                client.call(&format!("GET key{}", i % 600)).unwrap(),
                format!("${}\r\n{old}", old.len())
            );
            requests += 1;
        }
    };
    serve(&mut client, 10);
    // The first new backup is lost; the next transfer happens while the
    // guest serves requests, receives frames and writes its disk.
    first.kill();
    let started = wait_nth(&primary, "transfer_started", 2);
    assert_eq!(started["peer"], address('b').to_string());
    serve(&mut client, 10);
    let protected = wait_nth(&primary, "protected", 2);
    assert_eq!(protected["peer"], address('b').to_string());
    serve(&mut client, 10);
    client.close();
    primary.signal(libc::SIGTERM);
    let primary = primary.finish(TIMEOUT);
    let second = second.finish(TIMEOUT);
    let context = format!(
        "primary: {primary:#?}\nfirst: {:#?}\nsecond: {second:#?}",
        first.events.read()
    );
    // Both replayed the log with its digests every 1000 exits: the first
    // until it was killed, the second to the primary's end, which it shares.
    for events in [first.events.read(), second.events.clone()] {
        assert!(events.iter().any(|e| e["event"] == "paired"), "{context}");
        assert!(events.iter().all(|e| e["event"] != "diverged"), "{context}");
    }
    assert_eq!(primary.code(), 143, "{context}");
    assert_eq!(second.code(), 143, "{context}");
    assert_eq!(second.stdout, "", "{context}");
}

#[test]
fn a_joined_backup_on_a_busy_host_does_not_hold_its_primary_back() {
    // The replay runs at low priority, and a standby joins with little of
    // the log waiting. Restoring 600 keys is one exit of about 3.6 s of
    // guest time: the primary stalls after it until the backup has
    // replayed it, and told of the stall, the backup must hurry rather
    // than live on the crumbs of a busy host (it took minutes that way).
    let _one = serial();
    let hosts = Hosts::up(&host_name("rpbz"));
    let setup = hosts.setup("rp-busy");
    let (guest, [standby]) = kvstore_of_600_keys(&hosts, &setup, ['b']);
    let _busy = CpuHogs::start();
    let primary = alone_in_a(&hosts, &setup, &guest, &[], &['b']);
    wait_nth(&primary, "protected", 1);
    assert!(
        primary.stdout.wait_for("600 keys restored", TIMEOUT),
        "{}\n{}",
        primary.stdout.text(),
        primary.stderr.text()
    );
    primary.signal(libc::SIGTERM);
    let primary = primary.finish(TIMEOUT);
    let standby = standby.finish(TIMEOUT);
    let context = format!("primary: {primary:#?}\nstandby: {standby:#?}");
    assert_eq!(primary.code(), 143, "{context}");
    assert!(
        standby.events.iter().all(|e| e["event"] != "diverged"),
        "{context}"
    );
}

/// A re-protected pair: the primary of a pair in a killed, its backup in b
/// protected again by a standby in d. Returns the first primary, the new
/// primary in b and the new backup in d.
fn reprotected(
    hosts: &Hosts,
    setup: &PairSetup,
    guest: &[String],
    devices: &[&str],
) -> (Side, Side, Side) {
    let standby = hosts.start_standby(setup, 'd', &[], devices);
    let backup = PairSetup::started(start(hosts, 'b', setup.backup_args(&refs(guest)), &['d']));
    let primary = hosts.start_primary(setup, &refs(guest));
    assert!(primary.wait_event("paired"), "{}", primary.stderr.text());
    thread::sleep(Duration::from_millis(200));
    hosts.fail("kill", 'a');
    wait_nth(&backup, "protected", 1);
    (primary, backup, standby)
}

#[test]
fn a_cut_link_leaves_exactly_one_side_of_a_reprotected_pair_live() {
    let _one = serial();
    const TICKS: u64 = 150;
    let hosts = Hosts::up(&host_name("rpct"));
    let setup = hosts.setup("rp-cut");
    let guest = ["--kernel", "ticker", "--cmdline", "ticks=150 hz=50"].map(String::from);
    let (first, live, standby) = reprotected(&hosts, &setup, &guest, &[]);
    thread::sleep(Duration::from_millis(200));
    hosts.fail("cut", 'b');
    let live = live.finish(TIMEOUT);
    let standby = standby.finish(TIMEOUT);
    let flag = setup.arbiter_status();
    let context = format!("flag: {flag}\nnew primary: {live:#?}\nnew backup: {standby:#?}");
    let whole = match (live.code(), standby.code()) {
        (0, NOT_LIVE) => {
            assert_eq!(standby.stdout, "", "{context}");
            join_outputs(&first.stdout.text(), &live.stdout)
        }
        (NOT_LIVE, 0) => join_outputs(
            &join_outputs(&first.stdout.text(), &live.stdout),
            &standby.stdout,
        ),
        _ => panic!("want exactly one side live: {context}"),
    };
    assert_eq!(
        tick_numbers(&whole),
        (1..=TICKS).collect::<Vec<_>>(),
        "{context}"
    );
    assert!(flag.starts_with("generation 1, owner"), "{context}");
}

#[test]
fn a_partitioned_new_primary_lands_nothing_once_its_standby_is_live() {
    let _one = serial();
    const RECORDS: u64 = 400;
    let hosts = Hosts::up(&host_name("rppt"));
    let setup = hosts.setup("rp-partition");
    let image = setup.dir.join("shared.img");
    std::fs::write(&image, vec![0u8; 512 * 512]).unwrap();
    let guest = seq_guest(&image, RECORDS);
    let image_arg = image.to_str().unwrap().to_owned();
    let (_first, live, standby) = reprotected(&hosts, &setup, &guest, &["--disk", &image_arg]);
    // Frozen, as by a long pause, and cut off: the standby takes over.
    live.signal(libc::SIGSTOP);
    hosts.fail("cut", 'b');
    let standby = standby.finish(TIMEOUT);
    assert_eq!(standby.code(), 0, "{standby:#?}");
    assert!(standby.event("live").is_some(), "{standby:#?}");
    // The standby wrote every record and ended; from now on a write, even
    // of the same bytes, would move the image's mtime.
    let written = std::fs::metadata(&image).unwrap().modified().unwrap();
    let before = live.stdout.text();
    thread::sleep(Duration::from_millis(50));
    live.signal(libc::SIGCONT);
    let live = live.finish(TIMEOUT);
    let context = format!("new primary: {live:#?}\nnew backup: {standby:#?}");
    assert_eq!(live.code(), NOT_LIVE, "{context}");
    assert_eq!(
        live.stdout, before,
        "a console byte after the standby went live: {context}"
    );
    assert_eq!(
        std::fs::metadata(&image).unwrap().modified().unwrap(),
        written,
        "the partitioned side wrote the disk after the standby went live: {context}"
    );
    assert_eq!(records_on(&image), RECORDS, "{context}");
}

#[test]
fn the_network_demo_carries_a_connection_through_two_failures() {
    let _one = serial();
    common::demo(
        &[
            "--net",
            "--failures",
            "2",
            "--kill-after-ms",
            "800",
            "--sets-after",
            "10",
        ],
        &[
            "client ▸ connected from 10.0.0.1",
            "protected by",
            "none lost",
            "2 failures, 2 takeovers; the client's connection carried on through all of them",
        ],
    );
}
