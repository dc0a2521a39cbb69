//! The primary's lease: renewed by acknowledgements of recent sends, it
//! lapses when acknowledgements stop, well before the backup could be live.

use std::thread;
use std::time::{Duration, Instant};

use super::proxy::{Direction, forward, proxied_pair};
use super::support::{PATIENCE, SLACK, backup_loses, tight_config, timing};

#[test]
fn the_lease_holds_while_acknowledgements_flow_and_lapses_without_them() {
    let _timing = timing();
    let config = tight_config();
    let span = config.timeout / 2;
    let (primary, backup, proxy) = proxied_pair(&config, forward(), forward());
    let lease = primary.lease();
    // Heartbeats are acknowledged, so the lease is renewed without any log.
    let deadline = Instant::now() + PATIENCE;
    while !lease.holds(span) {
        assert!(Instant::now() < deadline, "the lease never held");
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(3 * config.heartbeat);
    assert!(lease.holds(span), "heartbeats did not keep the lease");

    // The primary's messages stop reaching the backup: no acknowledgement
    // renews the lease, which lapses before the backup declares the loss.
    proxy.freeze(Direction::ToBackup);
    let frozen = Instant::now();
    while lease.holds(span) {
        assert!(
            frozen.elapsed() < span + SLACK,
            "the lease outlived its span"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let lapsed = Instant::now();
    let (_, lost) = backup_loses(&backup);
    assert!(
        lapsed < lost,
        "the backup lost the primary while its lease held"
    );
}
