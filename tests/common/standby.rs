//! Standbys and re-protection: a standby's arguments, `--reprotect`
//! lists, and reading a live side's re-protection from its events.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::pair::{PairSetup, Side};

/// `--reprotect ADDR,...`.
pub fn reprotect(standbys: &[SocketAddr]) -> Vec<String> {
    let list: Vec<String> = standbys.iter().map(SocketAddr::to_string).collect();
    vec!["--reprotect".into(), list.join(",")]
}

impl PairSetup {
    /// `ftvm backup --join` listening on `address`, protecting itself once
    /// live with `standbys`; `extra` are its device options.
    pub fn standby_args(
        &self,
        address: SocketAddr,
        standbys: &[SocketAddr],
        extra: &[&str],
    ) -> Vec<String> {
        let mut args = vec![
            "backup".into(),
            "--join".into(),
            "--listen".into(),
            address.to_string(),
            "--arbiter".into(),
            self.arbiter.to_str().unwrap().into(),
            "--auth-key".into(),
            self.key.to_str().unwrap().into(),
        ];
        if !standbys.is_empty() {
            args.extend(reprotect(standbys));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts a standby on loopback and waits until it listens.
    pub fn start_standby(
        &self,
        address: SocketAddr,
        standbys: &[SocketAddr],
        extra: &[&str],
    ) -> Side {
        listening(
            Side::start(&self.standby_args(address, standbys, extra)),
            address,
        )
    }
}

/// Waits until `side` has started: a backup or standby that says
/// `started` accepts connections at `address` from then on.
pub fn listening(side: Side, address: SocketAddr) -> Side {
    let side = PairSetup::started(side);
    if let Err(error) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
        panic!(
            "started, but nothing listens on {address}: {error}\n{}",
            side.stderr.text()
        );
    }
    side
}

/// The events of `side` named `name`, in order.
pub fn events_named(side: &Side, name: &str) -> Vec<Value> {
    side.events
        .read()
        .into_iter()
        .filter(|event| event["event"] == name)
        .collect()
}

/// Waits until `side` has put its `count`th `name` event on its stream, and
/// returns it.
pub fn wait_nth(side: &Side, name: &str, count: usize) -> Value {
    let deadline = std::time::Instant::now() + super::TIMEOUT;
    loop {
        let found = events_named(side, name);
        if found.len() >= count {
            return found[count - 1].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {name} event #{count}: {}\n{:#?}",
            side.stderr.text(),
            side.events.read()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The re-protection events among `events` (`transfer_started`,
/// `transfer_failed`, `protected`), in order, each with its peer.
pub fn transfers(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|event| {
            let name = event["event"].as_str()?;
            ["transfer_started", "transfer_failed", "protected"]
                .contains(&name)
                .then(|| {
                    (
                        name.to_owned(),
                        event["peer"].as_str().unwrap_or("").to_owned(),
                    )
                })
        })
        .collect()
}
