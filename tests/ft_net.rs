//! A client's TCP connection to `kvstore` under a primary/backup pair on
//! two hosts survives the primary's host being killed: no reset, every
//! acknowledged key readable afterwards, and on the shared disk.
//!
//! Pairs run one at a time (DESIGN.md §8).

mod common;

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::TIMEOUT;
use common::hosts::Hosts;
use common::lan::{Connection, fresh_disk, kvstore};
use common::pair::{Side, host_name, serial};

/// How long a SET may wait: a takeover takes the timeout, the replay of
/// what the backup received, and TCP's retransmission backoff.
const PATIENCE: Duration = Duration::from_secs(20);
/// SETs acknowledged after the takeover before the client stops.
const AFTER: u64 = 20;

fn kill_moment(seed: u64, run: u64) -> Duration {
    Duration::from_millis(
        200 + (seed.wrapping_mul(run + 1).wrapping_mul(2_654_435_761) >> 7) % 1500,
    )
}

#[test]
fn a_client_connection_survives_takeover_with_every_acknowledged_key() {
    let _one = serial();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    eprintln!("seed {seed}");
    for run in 0..5 {
        let hosts = Hosts::up(&host_name(&format!("tcp{run}")));
        let setup = hosts.setup(&format!("ft-net-{run}"));
        let disk = fresh_disk(&setup.dir);
        let guest = kvstore(&disk);
        let guest: Vec<&str> = guest.iter().map(String::as_str).collect();
        let backup = hosts.start_backup(&setup, &guest);
        let primary = hosts.start_primary(&setup, &guest);
        assert!(
            primary.stdout.wait_for("listening on", TIMEOUT),
            "{}",
            primary.stderr.text()
        );
        let mut client = Connection::open(&hosts.namespace('c'), PATIENCE);
        let moment = kill_moment(seed, run);
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
            backup.stderr.wait_for("live from exit", TIMEOUT),
            "run {run}: {}\nprimary: {primary:#?}",
            backup.stderr.text()
        );
        // The same connection reads every acknowledged key back.
        for i in 0..acked {
            let value = format!("value{i}");
            let reply = client.call(&format!("GET key{i}")).unwrap();
            assert_eq!(reply, format!("${}\r\n{value}", value.len()), "run {run}");
        }
        eprintln!(
            "run {run}: {acked} SETs, longest {longest:?}, killed after {moment:?}\nprimary: {}\nbackup: {}",
            primary.stderr,
            backup.stderr.text()
        );
        client.close();
        let mut backup = backup;
        backup.kill();
        // A fresh VM from the shared disk alone has every key.
        let fresh = Side::start_in(&hosts.namespace('b'), &{
            let mut args = vec!["run".to_string()];
            args.extend(kvstore(&disk));
            args
        });
        assert!(
            fresh.stdout.wait_for("listening on", TIMEOUT),
            "{}",
            fresh.stderr.text()
        );
        let restored = format!("{acked} keys restored");
        assert!(
            fresh.stdout.text().contains(&restored),
            "run {run}: want `{restored}`: {}",
            fresh.stdout.text()
        );
        let mut check = Connection::open(&hosts.namespace('c'), PATIENCE);
        let last = acked - 1;
        assert_eq!(
            check.call(&format!("GET key{last}")).unwrap(),
            format!("${}\r\nvalue{last}", format!("value{last}").len())
        );
        check.close();
        let mut fresh = fresh;
        fresh.kill();
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_network_demo_shows_a_connection_carrying_on_across_the_takeover() {
    let _one = serial();
    let out = common::run(&[
        "demo",
        "--net",
        "--kill-after-ms",
        "1000",
        "--sets-after",
        "10",
    ]);
    assert_eq!(out.code(), 0, "{out:#?}");
    for needle in [
        "client ▸ connected from 10.0.0.1",
        "[killed with SIGKILL]",
        "live from exit",
        "none lost",
        "the client's connection carried on",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} not in {out:#?}");
    }
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains("ftvmdemo"),
        "the demo left its namespace behind"
    );
}
