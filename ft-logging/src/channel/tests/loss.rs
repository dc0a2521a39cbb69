//! Loss detection: a peer that goes silent is lost after the timeout (not
//! before, and not much after), and one whose socket closes at once.

use std::thread;
use std::time::{Duration, Instant};

use super::proxy::{Direction, Proxy, forward, proxied_pair};
use super::support::{SLACK, backup_loses, config, pair, primary_loses, tight_config, timing};
use crate::channel::{BackupLink, Lost, PrimaryLink};

/// Freezes `direction` once heartbeats have flowed for a while; returns the
/// loss its receiver reports, when it came, and when the proxy last
/// forwarded a byte that way.
fn freeze(direction: Direction) -> (Lost, Instant, Instant, Duration) {
    let config = tight_config();
    let (primary, backup, proxy) = proxied_pair(&config, forward(), forward());
    // Long enough that a stale last_heard (the link's start) would show.
    thread::sleep(3 * config.heartbeat);
    let frozen = Instant::now();
    proxy.freeze(direction);
    let (lost, detected) = match direction {
        Direction::ToBackup => backup_loses(&backup),
        Direction::ToPrimary => primary_loses(&primary),
    };
    let last_forward = proxy.last_forward(direction);
    // Nothing went out once the freeze had taken hold (one message may
    // have been on its way).
    assert!(last_forward <= frozen + SLACK);
    assert!(last_forward + config.heartbeat + SLACK >= frozen);
    (lost, detected, last_forward, config.timeout)
}

fn check_silence(lost: &Lost, detected: Instant, last_forward: Instant, timeout: Duration) {
    assert_eq!(lost.reason, format!("nothing received for {timeout:?}"));
    // The last byte heard is the last one the proxy let through.
    assert!(
        lost.last_heard >= last_forward,
        "last heard before the last byte went out"
    );
    assert!(lost.last_heard <= last_forward + SLACK);
    let silence = detected - lost.last_heard;
    assert!(silence >= timeout, "lost after {silence:?} of silence");
    assert!(
        silence <= timeout + SLACK,
        "lost only after {silence:?} of silence"
    );
}

#[test]
fn a_frozen_primary_is_lost_after_the_timeout() {
    let _timing = timing();
    let (lost, detected, last_forward, timeout) = freeze(Direction::ToBackup);
    check_silence(&lost, detected, last_forward, timeout);
}

#[test]
fn a_frozen_backup_is_lost_after_the_timeout() {
    let _timing = timing();
    let (lost, detected, last_forward, timeout) = freeze(Direction::ToPrimary);
    check_silence(&lost, detected, last_forward, timeout);
}

/// A loss that came well before the timeout, so from the closed socket.
fn check_prompt(lost: &Lost, detected: Instant, killed: Instant) {
    let took = detected - killed;
    // With `config()`'s 3 s timeout, a loss by silence takes longer.
    assert!(took < SLACK, "lost only after {took:?}");
    assert!(!lost.reason.contains("nothing received"), "{}", lost.reason);
    assert!(
        killed - lost.last_heard < SLACK,
        "last heard long before the kill"
    );
}

/// A pair that has run for a moment, so both have heard each other.
fn running_pair() -> (PrimaryLink, BackupLink) {
    let pair = pair(&config());
    thread::sleep(Duration::from_millis(200));
    pair
}

#[test]
fn a_killed_backup_is_lost_at_once() {
    let _timing = timing();
    let (primary, backup) = running_pair();
    let killed = Instant::now();
    drop(backup);
    let (lost, detected) = primary_loses(&primary);
    check_prompt(&lost, detected, killed);
}

#[test]
fn a_killed_primary_is_lost_at_once() {
    let _timing = timing();
    let (primary, backup) = running_pair();
    let killed = Instant::now();
    // Dropped without `close`: no goodbye.
    drop(primary);
    let (lost, detected) = backup_loses(&backup);
    check_prompt(&lost, detected, killed);
}

#[test]
fn a_cut_connection_is_lost_on_both_sides_at_once() {
    let _timing = timing();
    let (primary, backup, proxy): (_, _, Proxy) = proxied_pair(&config(), forward(), forward());
    thread::sleep(Duration::from_millis(200));
    let cut = Instant::now();
    proxy.cut();
    let (lost, detected) = backup_loses(&backup);
    check_prompt(&lost, detected, cut);
    let (lost, detected) = primary_loses(&primary);
    check_prompt(&lost, detected, cut);
}
