//! Three "hosts" and a client in network namespaces, made by
//! `scripts/two-hosts.sh` and removed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use super::TIMEOUT;
use super::lan::kvstore;
use super::pair::{PairSetup, Side};

/// Where the backup listens inside its host.
pub const BACKUP_ADDRESS: &str = "10.99.0.2:7000";

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

fn run_script(name: &str, args: &[&str]) {
    let output = Command::new(script(name))
        .args(args)
        .output()
        .expect("run the script");
    assert!(
        output.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where ftvm listens on host `host` (a, b or d): a backup or a standby.
pub fn address(host: char) -> SocketAddr {
    let last = match host {
        'a' => 1,
        'b' => 2,
        'd' => 4,
        other => panic!("no ftvm host {other}"),
    };
    format!("10.99.0.{last}:7000").parse().unwrap()
}

/// The namespaces NAME-a (primary), NAME-b (backup), NAME-d (a standby),
/// NAME-c (client).
#[derive(Debug)]
pub struct Hosts {
    pub name: String,
}

impl Hosts {
    pub fn up(name: &str) -> Self {
        run_script("two-hosts.sh", &["up", name]);
        Self { name: name.into() }
    }

    pub fn namespace(&self, host: char) -> String {
        format!("{}-{host}", self.name)
    }

    /// Fails the primary's host: `kill`, `cut` or `heal` (scripts/takeover.sh).
    pub fn takeover(&self, how: &str) {
        run_script("takeover.sh", &[how, &self.name]);
    }

    /// Fails host `host` (a, b or d) as `takeover` does the primary's.
    pub fn fail(&self, how: &str, host: char) {
        run_script("takeover.sh", &[how, &self.name, &host.to_string()]);
    }

    /// A standby on host `host`, protecting itself once live with the
    /// standbys of `hosts`; `extra` are its device options. Returned once it
    /// listens.
    pub fn start_standby(
        &self,
        setup: &PairSetup,
        host: char,
        hosts: &[char],
        extra: &[&str],
    ) -> Side {
        let standbys: Vec<SocketAddr> = hosts.iter().map(|&h| address(h)).collect();
        let side = Side::start_in(
            &self.namespace(host),
            &setup.standby_args(address(host), &standbys, extra),
        );
        let side = PairSetup::started(side);
        self.assert_listening(host, &side);
        side
    }

    /// Checks that something accepts connections on host `host`'s ftvm
    /// port, as seen from the client's host: a started standby listens.
    pub fn assert_listening(&self, host: char, side: &Side) {
        let probe = Command::new("ip")
            .args(["netns", "exec", &self.namespace('c'), "nc", "-z", "-w", "1"])
            .args(address(host).to_string().split(':'))
            .status()
            .expect("run nc");
        assert!(
            probe.success(),
            "started, but nothing listens on host {host}: {}",
            side.stderr.text()
        );
    }

    /// A pair whose backup listens in host b.
    pub fn setup(&self, test: &str) -> PairSetup {
        PairSetup::at(test, BACKUP_ADDRESS.parse::<SocketAddr>().unwrap())
    }

    pub fn start_backup(&self, setup: &PairSetup, kernel: &[&str]) -> Side {
        PairSetup::started(Side::start_in(
            &self.namespace('b'),
            &setup.backup_args(kernel),
        ))
    }

    pub fn start_primary(&self, setup: &PairSetup, kernel: &[&str]) -> Side {
        Side::start_in(
            &self.namespace('a'),
            &setup.primary_args(kernel, &setup.key),
        )
    }

    /// `kvstore` on `disk` under `ftvm COMMAND...` (run, record) in host a,
    /// once it listens.
    pub fn kvstore(&self, command: &[&str], disk: &std::path::Path) -> Side {
        self.kvstore_in('a', command, disk)
    }

    /// [`Hosts::kvstore`] in `host`.
    pub fn kvstore_in(&self, host: char, command: &[&str], disk: &std::path::Path) -> Side {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(kvstore(disk));
        let side = Side::start_in(&self.namespace(host), &args);
        assert!(
            side.stdout.wait_for("listening on", TIMEOUT),
            "kvstore never listened: {}\n{}",
            side.stdout.text(),
            side.stderr.text()
        );
        side
    }

    /// A backup and a primary of `guest`, once the guest serves.
    pub fn serving_pair(&self, setup: &PairSetup, guest: &[String]) -> (Side, Side) {
        let guest: Vec<&str> = guest.iter().map(String::as_str).collect();
        let backup = self.start_backup(setup, &guest);
        let primary = self.start_primary(setup, &guest);
        assert!(
            primary.stdout.wait_for("listening on", TIMEOUT),
            "{}",
            primary.stderr.text()
        );
        (backup, primary)
    }

    /// A fresh `kvstore` booted from `disk` alone in host `host`, once it
    /// serves: it must have restored `keys` keys from the disk's log.
    pub fn boot_restoring(&self, host: char, disk: &std::path::Path, keys: u64) -> Side {
        let fresh = self.kvstore_in(host, &["run"], disk);
        let restored = format!("{keys} keys restored");
        assert!(
            fresh.stdout.text().contains(&restored),
            "want `{restored}`: {}",
            fresh.stdout.text()
        );
        fresh
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new(script("two-hosts.sh"))
            .args(["down", &self.name])
            .status();
    }
}
