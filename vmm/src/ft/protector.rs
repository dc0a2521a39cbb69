//! A live side's protector: the thread that reads its backup's messages
//! (acknowledgements release outputs, progress paces the guest), decides
//! what a lost backup means (win the go-live flag and go on alone, or halt),
//! and, while the side runs alone, brings a standby into sync with a live
//! transfer, again after every failure (re-protection).
//!
//! The go-live flag's generations keep at most one side live: this side
//! owns generation g while it runs alone. Once a standby holds the whole
//! state it moves the flag to g+1 with no owner, and the new pair forms
//! there: whichever side loses the other first wins g+1. Until then the
//! standby cannot go live (the flag is not at its generation), and this side
//! stays the owner of g if the transfer fails. A side of an older pair can
//! never win again, since the flag never goes back.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ft_logging::Header;
use ft_logging::channel::{
    ChannelConfig, ChannelError, FromBackup, Lost, PrimaryHello, PrimaryLink, connect,
};
use shared_disk::{Arbiter, FlagState, Outcome};

use super::OutputGate;
use super::primary::{FENCED_REASON, PairMode, PairStatus};
use super::report::{Protected, Reporter};
use super::transfer::{Cutover, CutoverRequest, Cutovers, pre_copy};
use crate::host::{HostInput, StopSignal, sample_sectors};
use crate::vstate::MemoryTracker;

/// The first wait after every listed standby failed; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a waiting protector looks at whether the run ended.
const POLL: Duration = Duration::from_millis(50);
/// How long a side stopped by a signal gives its backup to take the end of
/// the log.
const STOP_LINGER: Duration = Duration::from_millis(300);
/// How often the vCPU is kicked while a cutover waits for it.
const KICK_EVERY: Duration = Duration::from_millis(10);

/// What the protector needs to know of its side.
#[derive(Debug)]
pub struct ProtectorConfig {
    /// The go-live flag.
    pub arbiter: Arbiter,
    /// This side's name in the flag.
    pub owner: String,
    /// The generation this side owns (alone) or pairs at (paired).
    pub generation: u64,
    /// How to talk to standbys and backups.
    pub channel: ChannelConfig,
    /// The standbys to bring into sync, in order; none: no re-protection.
    pub standbys: Vec<SocketAddr>,
    /// The VM's header, as a standby gets it.
    pub header: Header,
    /// The guest's memory and its dirty pages.
    pub tracker: MemoryTracker,
    /// Where changes of protection are told.
    pub reporter: Reporter,
}

/// A pair being watched.
#[derive(Debug)]
pub struct Watched {
    from_backup: Receiver<FromBackup>,
    status: Arc<PairStatus>,
    peer: SocketAddr,
    /// A standby that has not said it holds the state yet.
    joining: Option<Joining>,
    /// The standby was lost before the pair was watched.
    lost: Option<Lost>,
}

impl Watched {
    /// The pair a primary formed with its backup at start.
    pub fn initial(link: &PrimaryLink, status: Arc<PairStatus>, peer: SocketAddr) -> Self {
        Self {
            from_backup: link.from_backup(),
            status,
            peer,
            joining: None,
            lost: None,
        }
    }
}

/// A transfer between its cutover and the standby's word that it holds the
/// state.
#[derive(Debug)]
struct Joining {
    started: Instant,
    pause: Duration,
    bytes: u64,
    rounds: u32,
}

/// What the thread shares with the side's main thread.
#[derive(Debug, Default)]
struct Shared {
    /// The run ended: no more transfers.
    finished: AtomicBool,
    /// The link to the current backup, closed with a goodbye at the end.
    current: Mutex<Option<PrimaryLink>>,
}

impl Shared {
    fn current(&self) -> std::sync::MutexGuard<'_, Option<PrimaryLink>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The protector's thread, until [`finish`](Self::finish).
#[derive(Debug)]
pub struct Protection {
    shared: Arc<Shared>,
    cutovers: Arc<Cutovers>,
    thread: Option<JoinHandle<()>>,
}

/// Where watching a pair left this side.
enum After {
    Alone,
    Fenced,
    Ended,
}

impl Protection {
    /// Starts protecting a live side whose outputs go through `gate` and
    /// whose vCPU takes cutovers from `cutovers`: watching `initial` (with
    /// its link) if it is paired, re-protecting it when it is alone.
    pub fn start<W: Write + Send + 'static>(
        config: ProtectorConfig,
        gate: Arc<OutputGate<W>>,
        cutovers: Arc<Cutovers>,
        stop: Arc<StopSignal>,
        wake: Sender<HostInput>,
        initial: Option<(PrimaryLink, Watched)>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let watched = initial.map(|(link, watched)| {
            *shared.current() = Some(link);
            watched
        });
        let mut protector = Protector {
            config,
            gate,
            cutovers: cutovers.clone(),
            stop,
            wake,
            shared: shared.clone(),
        };
        let thread = thread::Builder::new()
            .name("ftvm-protector".into())
            .spawn(move || protector.run(watched))?;
        Ok(Self {
            shared,
            cutovers,
            thread: Some(thread),
        })
    }

    /// The run ended: says goodbye to the backup after everything queued
    /// (the side's end record among it), stops re-protecting, and waits for
    /// the thread (which may be deciding about a lost backup). A run that
    /// was `stopped` by a signal gives the backup only a short while.
    pub fn finish(mut self, stopped: bool) {
        self.shared.finished.store(true, Ordering::SeqCst);
        self.cutovers.withdraw();
        let link = self.shared.current().take();
        match link {
            Some(link) if stopped => link.close_within(STOP_LINGER),
            Some(link) => link.close(),
            None => {}
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the protector thread panicked");
        }
    }
}

struct Protector<W> {
    config: ProtectorConfig,
    gate: Arc<OutputGate<W>>,
    cutovers: Arc<Cutovers>,
    stop: Arc<StopSignal>,
    /// Wakes the vCPU thread out of a wait in HLT when this side halts.
    wake: Sender<HostInput>,
    shared: Arc<Shared>,
}

impl<W: Write> Protector<W> {
    fn run(&mut self, mut watched: Option<Watched>) {
        loop {
            if let Some(pair) = watched.take() {
                match self.watch(pair) {
                    After::Alone => {}
                    After::Fenced | After::Ended => return,
                }
            }
            if self.config.standbys.is_empty() {
                return;
            }
            match self.reprotect() {
                Some(pair) => watched = Some(pair),
                None => return,
            }
        }
    }

    /// Whether the run ended or the host asked to stop.
    fn done(&self) -> bool {
        self.shared.finished.load(Ordering::SeqCst) || self.stop.requested().is_some()
    }

    /// Reads the backup's messages until the pair ends.
    fn watch(&mut self, mut pair: Watched) -> After {
        if let Some(lost) = pair.lost.take() {
            return self.lost(&pair, &lost);
        }
        loop {
            let message = match pair.from_backup.recv_timeout(POLL) {
                Ok(message) => message,
                // The link ended without a loss: the run ended and said
                // goodbye.
                Err(RecvTimeoutError::Disconnected) => return After::Ended,
                Err(RecvTimeoutError::Timeout) => continue,
            };
            match message {
                FromBackup::Ack { through_exit } => {
                    pair.status.acked(through_exit);
                    if let Err(error) = self.gate.ack(through_exit) {
                        tracing::error!(%error, "cannot write the console");
                    }
                }
                FromBackup::Progress { virtual_ns, .. } => pair.status.progress(virtual_ns),
                FromBackup::Holding { exit } => {
                    if let Some(joining) = pair.joining.take()
                        && let Err(after) = self.rearm(&pair, &joining, exit)
                    {
                        return after;
                    }
                }
                FromBackup::Lost(lost) => return self.lost(&pair, &lost),
            }
        }
    }

    /// The standby holds the whole state: the flag moves on to the next
    /// generation, where the new pair forms.
    fn rearm(&mut self, pair: &Watched, joining: &Joining, exit: u64) -> Result<(), After> {
        let generation = self.config.generation;
        match self.config.arbiter.rearm(generation, &self.config.owner) {
            Ok(state) => {
                self.config.generation = state.generation;
                tracing::info!(
                    exit,
                    generation = state.generation,
                    "the standby holds the state"
                );
                self.config.reporter.protected(&Protected {
                    peer: pair.peer,
                    pause: joining.pause,
                    bytes: joining.bytes,
                    rounds: joining.rounds,
                    to_protected: joining.started.elapsed(),
                    generation: state.generation,
                });
                Ok(())
            }
            Err(error) => {
                let reason = format!("cannot move the go-live flag on: {error}");
                self.config.reporter.transfer_failed(pair.peer, &reason);
                Err(self.abandon(pair, generation))
            }
        }
    }

    /// A transfer whose flag move failed is abandoned: the standby is cut
    /// off, and this side finds out which generation it owns now (the move
    /// may have reached the disk although it reported a failure).
    fn abandon(&mut self, pair: &Watched, generation: u64) -> After {
        drop(self.shared.current().take());
        let next = generation + 1;
        let outcome = self
            .config
            .arbiter
            .test_and_set(next, &self.config.owner, &|| {
                self.stop.requested().is_some()
            });
        let still_ours = FlagState {
            generation,
            owner: Some(self.config.owner.clone()),
        };
        match outcome {
            Ok(Outcome::Won) => {
                self.config.generation = next;
                self.go_alone(pair)
            }
            Ok(Outcome::Lost(state)) if state == still_ours => self.go_alone(pair),
            Ok(Outcome::Lost(state)) => self.fence(
                pair,
                "the transfer was abandoned",
                &format!("is taken ({state})"),
            ),
            Err(_) if self.stop.requested().is_some() => After::Ended,
            Err(error) => self.fence(
                pair,
                "the transfer was abandoned",
                &format!("cannot be had: {error}"),
            ),
        }
    }

    /// The backup is gone: this side goes on only with the flag of the
    /// pair's generation (which it still owns if the standby never said it
    /// held the state).
    fn lost(&mut self, pair: &Watched, lost: &Lost) -> After {
        drop(self.shared.current().take());
        if pair.joining.is_some() {
            self.config
                .reporter
                .transfer_failed(pair.peer, &lost.reason);
        } else {
            self.config.reporter.lost(&lost.reason);
        }
        let silent = lost.last_heard.elapsed();
        let started = Instant::now();
        let outcome =
            self.config
                .arbiter
                .test_and_set(self.config.generation, &self.config.owner, &|| {
                    self.stop.requested().is_some()
                });
        match outcome {
            Ok(Outcome::Won) => {
                if pair.joining.is_none() {
                    self.config
                        .reporter
                        .alone(&lost.reason, silent, started.elapsed());
                }
                self.go_alone(pair)
            }
            Ok(Outcome::Lost(state)) => {
                self.fence(pair, &lost.reason, &format!("is taken ({state})"))
            }
            // Stopping while it waited: the vCPU stops too, fenced or not.
            Err(_) if self.stop.requested().is_some() => After::Ended,
            Err(error) => self.fence(pair, &lost.reason, &format!("cannot be had: {error}")),
        }
    }

    fn go_alone(&self, pair: &Watched) -> After {
        if let Err(error) = self.gate.go_solo() {
            tracing::error!(%error, "cannot write the console");
        }
        self.config.reporter.alone_again();
        pair.status.set_mode(PairMode::Alone);
        After::Alone
    }

    fn fence(&self, pair: &Watched, reason: &str, flag: &str) -> After {
        self.config.reporter.fenced(reason, flag);
        pair.status.set_mode(PairMode::Fenced);
        // Also reaches a guest waiting in HLT.
        let _ = self.wake.send(HostInput::Fenced(FENCED_REASON.into()));
        After::Fenced
    }

    /// Tries the standbys in order until one is in sync, waiting longer
    /// after each time none was; None once the run ended.
    fn reprotect(&mut self) -> Option<Watched> {
        let mut wait = RETRY_FIRST;
        loop {
            for peer in self.config.standbys.clone() {
                if self.done() {
                    return None;
                }
                match self.transfer(peer) {
                    Ok(pair) => return Some(pair),
                    Err(Failure::Unreachable(error)) => {
                        tracing::debug!(%peer, %error, "no standby answers");
                    }
                    Err(Failure::Failed(reason)) => {
                        self.config.reporter.transfer_failed(peer, &reason);
                    }
                }
            }
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.done() {
                    return None;
                }
                thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Sends the running VM to the standby at `peer`.
    fn transfer(&self, peer: SocketAddr) -> Result<Watched, Failure> {
        let hello = PrimaryHello {
            header: self.config.header.clone(),
            generation: self.config.generation,
            join: true,
        };
        let link = connect(peer, &self.config.channel, &hello).map_err(|error| match error {
            ChannelError::Connect { .. } => Failure::Unreachable(error.to_string()),
            other => Failure::Failed(other.to_string()),
        })?;
        let started = Instant::now();
        self.config.reporter.transfer_started(peer);
        let (from_backup, sender, lease) = (link.from_backup(), link.sender(), link.lease());
        *self.shared.current() = Some(link);
        let lost: Mutex<Option<Lost>> = Mutex::new(None);
        let abort = || -> Option<String> {
            if self.done() {
                return Some("the run ended".into());
            }
            let mut lost = lost.lock().unwrap_or_else(PoisonError::into_inner);
            if lost.is_none()
                && let Ok(FromBackup::Lost(gone)) = from_backup.try_recv()
            {
                *lost = Some(gone);
            }
            lost.as_ref()
                .map(|lost| format!("the standby was lost: {}", lost.reason))
        };
        let fail = |reason: String| {
            if let Err(error) = self.config.tracker.stop() {
                tracing::warn!(%error, "cannot stop tracking dirty pages");
            }
            drop(self.shared.current().take());
            Failure::Failed(reason)
        };
        let copied = match pre_copy(&self.config.tracker, &sender, &abort) {
            Ok(copied) => copied,
            Err(reason) => return Err(fail(reason)),
        };
        let sectors = self
            .config
            .header
            .disk
            .map(|disk| sample_sectors(disk.sectors, seed()))
            .unwrap_or_default();
        let (done, answer) = crossbeam_channel::bounded(1);
        self.cutovers.ask(CutoverRequest {
            sender: sender.clone(),
            lease,
            // The standby goes live after a whole timeout of silence; half
            // of it leaves room for clocks that run at different rates.
            lease_span: self.config.channel.timeout / 2,
            tracker: self.config.tracker.clone(),
            carried: copied.carried,
            samples: sectors,
            done,
        });
        let cutover = match self.await_cutover(&answer, &abort) {
            Ok(cutover) => cutover,
            Err(reason) => return Err(fail(reason)),
        };
        if let Err(error) = self.config.tracker.stop() {
            tracing::warn!(%error, "cannot stop tracking dirty pages");
        }
        let samples = match &cutover.samples {
            Some(samples) => samples.recv().unwrap_or_default(),
            None => Vec::new(),
        };
        sender.disk_check(samples);
        tracing::info!(
            exit = cutover.exit,
            pause_us = cutover.pause.as_micros() as u64,
            pages = cutover.pages,
            "cutover"
        );
        Ok(Watched {
            from_backup,
            status: cutover.status,
            peer,
            joining: Some(Joining {
                started,
                pause: cutover.pause,
                bytes: copied.bytes + cutover.bytes,
                rounds: copied.rounds,
            }),
            lost: lost.into_inner().unwrap_or_else(PoisonError::into_inner),
        })
    }

    /// Waits for the vCPU thread to pause and switch, kicking it while it
    /// runs; gives up (taking the request back) if `abort` says so first.
    fn await_cutover(
        &self,
        answer: &Receiver<Result<Cutover, String>>,
        abort: &dyn Fn() -> Option<String>,
    ) -> Result<Cutover, String> {
        loop {
            match answer.recv_timeout(KICK_EVERY) {
                Ok(result) => return result,
                // The vCPU thread dropped the request: its run ended.
                Err(RecvTimeoutError::Disconnected) => return Err("the run ended".into()),
                Err(RecvTimeoutError::Timeout) => match abort() {
                    // Once the vCPU thread has the request, its answer
                    // comes; a loss is then the new pair's.
                    Some(reason) if self.cutovers.withdraw() => return Err(reason),
                    _ => self.cutovers.remind(),
                },
            }
        }
    }
}

/// Why a transfer did not happen.
enum Failure {
    /// Nothing answers at the address.
    Unreachable(String),
    /// A peer answered, but no standby came of it.
    Failed(String),
}

/// Different sampled sectors for each transfer.
fn seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}
