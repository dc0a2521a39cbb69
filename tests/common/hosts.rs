//! Two "hosts" and a client in network namespaces, made by
//! `scripts/two-hosts.sh` and removed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

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

/// The namespaces NAME-a (primary), NAME-b (backup), NAME-c (client).
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
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new(script("two-hosts.sh"))
            .args(["down", &self.name])
            .status();
    }
}
