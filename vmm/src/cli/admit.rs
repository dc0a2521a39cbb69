//! Which peer a backup or a standby pairs with: it waits on its listener
//! until a peer's hello is accepted. A peer that is not for it (a live side
//! offering a running VM to a backup, a new pair offered to a standby, a
//! stale generation) is refused and the wait goes on; a peer it cannot
//! serve (another kernel, another disk) ends the wait with a status.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;

use ft_logging::channel::{BackupLink, BackupListener, ChannelConfig, ChannelError, PrimaryHello};

use super::error::CliError;
use super::live::Host;

/// Why a hello is refused.
#[derive(Debug)]
pub struct Refusal {
    pub reason: String,
    /// The status to end with; none: wait for another peer.
    pub fatal: Option<u8>,
}

impl Refusal {
    /// A peer that is not for this side: refused, and the wait goes on.
    pub fn waiting(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            fatal: None,
        }
    }

    /// A peer this side cannot serve: it ends with `status`.
    pub fn fatal(reason: impl Into<String>, status: u8) -> Self {
        Self {
            reason: reason.into(),
            fatal: Some(status),
        }
    }
}

/// Waits on `listener` (bound again at `address` after each refusal) until
/// `check` accepts a peer's hello; returns the link, the hello and what
/// `check` made of it, or the fatal refusal.
pub fn admit<T>(
    mut listener: BackupListener,
    address: SocketAddr,
    channel: &ChannelConfig,
    host: &Host,
    role: &str,
    check: impl Fn(&PrimaryHello) -> Result<T, Refusal>,
) -> Result<(BackupLink, PrimaryHello, T), Admission> {
    loop {
        let accepted = RefCell::new(None);
        let fatal = Cell::new(None);
        let offered = |hello: &PrimaryHello| match check(hello) {
            Ok(value) => {
                *accepted.borrow_mut() = Some(value);
                Ok(())
            }
            Err(refusal) => {
                fatal.set(refusal.fatal);
                Err(refusal.reason)
            }
        };
        match listener.accept(channel, &offered, &|| host.stop.requested().is_some()) {
            Ok((link, hello)) => {
                let value = accepted
                    .into_inner()
                    .expect("an accepted hello was checked");
                return Ok((link, hello, value));
            }
            Err(ChannelError::Mismatch(reason)) => match fatal.get() {
                Some(status) => return Err(Admission::Refused { reason, status }),
                None => eprintln!("ftvm: {role}: refused a peer ({reason}); waiting for another"),
            },
            Err(error) => return Err(Admission::Failed(error)),
        }
        listener = BackupListener::bind(address).map_err(Admission::Failed)?;
    }
}

/// Why no peer was admitted.
#[derive(Debug)]
pub enum Admission {
    /// A peer this side cannot serve.
    Refused { reason: String, status: u8 },
    /// The listener failed, or a stop ended the wait.
    Failed(ChannelError),
}

impl Admission {
    /// The error a side waiting for `waiting` ends with.
    pub fn into_error(
        self,
        host: &Host,
        waiting: &'static str,
        refused: impl FnOnce(String, u8) -> CliError,
    ) -> CliError {
        match self {
            Self::Refused { reason, status } => refused(reason, status),
            Self::Failed(error) => host.stopped_or(waiting, error),
        }
    }
}
