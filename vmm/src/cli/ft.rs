//! `ftvm primary` and `ftvm backup`: one guest on two hosts.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ft_logging::channel::{
    AuthKey, BackupListener, ChannelConfig, PrimaryHello, PrimaryLink, dial,
};
use ft_logging::{EventSource, SourceError};
use ftvm_core::exit_handler::CoreError;
use shared_disk::{Arbiter, FlagState, ImageLock, Outcome};
use vmm::exit_status;
use vmm::ft::{
    Backlog, BackupSink, BackupSource, FlagClaim, GatedSink, Limits, LogStatus, OutputGate,
    PairStatus, PrimarySource, Takeover, pairing, watch_backup,
};
use vmm::host::{HostSink, Tap, priority};
use vmm::machine::{Cpu, Machine, end_reason};
use vmm::monitor::{Event, Monitor, Role};
use vmm::vstate::{RunError, VmEnd};

use super::error::CliError;
use super::live::Host;
use super::run::{DEFAULT_DIGEST_INTERVAL, conclude};
use super::{Ended, MonitorArgs, VmArgs};

/// How long a primary stopped by a signal gives its backup to take the
/// end of the log.
const STOP_LINGER: Duration = Duration::from_millis(300);

/// What both sides of a pair need.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// The go-live flag: a file on storage both hosts see (`ftvm arbiter init`).
    #[arg(long, value_name = "PATH")]
    arbiter: PathBuf,
    /// A file holding the key both sides must know (at least 16 bytes).
    #[arg(long, value_name = "FILE")]
    auth_key: PathBuf,
    /// Silence from the peer for longer than this means it is gone.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    timeout_ms: u64,
    /// Heartbeats go out this often when nothing else does.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    heartbeat_ms: u64,
}

impl PairArgs {
    fn channel(&self) -> Result<ChannelConfig, CliError> {
        if self.heartbeat_ms == 0 || self.timeout_ms <= self.heartbeat_ms {
            return Err(CliError::Usage(format!(
                "--timeout-ms ({}) must be longer than --heartbeat-ms ({}), which must be at least 1",
                self.timeout_ms, self.heartbeat_ms
            )));
        }
        let key = AuthKey::from_file(&self.auth_key)
            .map_err(|error| CliError::Usage(error.to_string()))?;
        Ok(ChannelConfig {
            key,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }

    /// The arbiter, and the generation a new pair forms at: nobody may be
    /// live in it already.
    fn arbiter(&self) -> Result<(Arbiter, u64), CliError> {
        let arbiter = Arbiter::new(&self.arbiter);
        let state = arbiter.status()?;
        if let FlagState {
            owner: Some(owner),
            generation,
        } = &state
        {
            return Err(CliError::NotLive(format!(
                "the go-live flag in {} says {owner} is live (generation {generation}); `ftvm arbiter reset` starts a new pair",
                self.arbiter.display()
            )));
        }
        Ok((arbiter, state.generation))
    }
}

#[derive(Debug, Args)]
pub struct PrimaryArgs {
    /// The backup's logging address.
    #[arg(long, value_name = "ADDR:PORT")]
    backup: SocketAddr,
    #[command(flatten)]
    pair: PairArgs,
    /// How long to wait for the backup before running alone (after winning
    /// the go-live flag).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    wait_backup_ms: u64,
    /// Log bytes sent but not acknowledged before the guest stalls.
    #[arg(long, default_value_t = 64, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..))]
    log_buffer_mib: u64,
    /// Guest time the backup may trail before the guest stalls.
    #[arg(long, default_value_t = 100, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_lag_ms: u64,
    /// Exits between digests of the guest's state and console in the log.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DIGEST_INTERVAL,
          value_parser = clap::value_parser!(u64).range(1..))]
    digest_every: u64,
    #[command(flatten)]
    pub vm: VmArgs,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The address to listen on for the primary's log.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    #[command(flatten)]
    pair: PairArgs,
    #[command(flatten)]
    pub vm: VmArgs,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

impl BackupArgs {
    /// What this backup starts as, in its `started` event.
    pub fn role(&self) -> &'static str {
        "backup"
    }
}

/// A name for this side in the go-live flag.
fn owner(role: &str, address: SocketAddr) -> String {
    format!("{role} pid {} ({address})", std::process::id())
}

pub fn primary(args: &PrimaryArgs, monitor: &Arc<Monitor>, host: &Host) -> Result<Ended, CliError> {
    let stats = monitor.stats();
    stats.set_role(Role::Primary);
    let (config, backends) = args.vm.open(ImageLock::Now)?;
    let channel = args.pair.channel()?;
    let (arbiter, generation) = args.pair.arbiter()?;
    let mut machine = Machine::new(&config, Cpu::Model)?;
    machine.count_exits(stats.exits.clone());
    let hello = PrimaryHello {
        header: machine.header(&config, args.digest_every),
        generation,
    };
    host.attach_stdin()?;
    let owner = owner("primary", args.backup);
    let link = wait_for_backup(args, &channel, &hello, host)?;
    if link.is_none() {
        eprintln!(
            "ftvm: primary: no backup at {} after {} ms; running alone needs the go-live flag",
            args.backup, args.wait_backup_ms
        );
        let outcome = arbiter
            .test_and_set(generation, &owner, &|| host.stop.requested().is_some())
            .map_err(|error| host.stopped_or("waiting for the go-live flag", error))?;
        match outcome {
            Outcome::Won => {
                stats.set_role(Role::Alone);
                eprintln!("ftvm: primary: won the go-live flag; running alone");
            }
            Outcome::Lost(state) => {
                return Err(CliError::NotLive(format!(
                    "primary: the go-live flag is taken ({state}): not running alone"
                )));
            }
        }
    }

    // The backup goes live after a full timeout of silence; half of it
    // leaves room for clocks that run at slightly different rates.
    let lease_span = channel.timeout / 2;
    let leased: Box<dyn Fn() -> bool + Send + Sync> = match &link {
        Some(link) => {
            let lease = link.lease();
            Box::new(move || lease.holds(lease_span))
        }
        None => Box::new(|| true),
    };
    let devices = host.devices(backends, true)?;
    let gate = OutputGate::new(std::io::stdout(), devices, link.is_none(), leased);
    let status = Arc::new(PairStatus::default());
    let sender = link.as_ref().map(PrimaryLink::sender);
    if let Some(link) = &link {
        eprintln!("ftvm: primary: paired with the backup at {}", args.backup);
        stats.set_paired(true);
        monitor.emit(Event::Paired {
            peer: args.backup.to_string(),
        });
        let claim = FlagClaim {
            arbiter,
            generation,
            owner,
        };
        watch_backup(
            link.from_backup(),
            gate.clone(),
            status.clone(),
            claim,
            host.stop.clone(),
            host.input_sender(),
            monitor.clone(),
        )
        .map_err(CliError::Host)?;
    }
    let limits = Limits {
        buffer_bytes: args.log_buffer_mib << 20,
        max_lag_ns: args.max_lag_ms * 1_000_000,
    };
    let mut source = PrimarySource::new(
        host.live_source(),
        sender,
        gate.clone(),
        status,
        host.stop.clone(),
        limits,
        stats.clone(),
    );
    let result = machine.run(
        &mut source,
        &mut GatedSink(gate),
        &host.stop,
        args.digest_every,
    );
    let status = match &result {
        Ok(end) => exit_status::of_end(*end),
        Err(error) => exit_status::of_run_error(error),
    };
    // The backup learns how the run ended, so it ends too.
    let ended = source.end(&machine.end(end_reason(&result), status));
    match link {
        Some(link) if host.stop.requested().is_some() => link.close_within(STOP_LINGER),
        Some(link) => link.close(),
        None => {}
    }
    host.finish();
    ended.map_err(|error| CliError::Run(RunError::Core(error.into())))?;
    conclude(result)
}

/// Pairs with the backup, trying again while it does not answer, for up to
/// `--wait-backup-ms`. None when it never came.
fn wait_for_backup(
    args: &PrimaryArgs,
    channel: &ChannelConfig,
    hello: &PrimaryHello,
    host: &Host,
) -> Result<Option<PrimaryLink>, CliError> {
    let wait = Duration::from_millis(args.wait_backup_ms);
    dial(args.backup, channel, hello, wait, &|| {
        host.stop.requested().is_some()
    })
    .map_err(|error| host.stopped_or("waiting for the backup", error))
}

pub fn backup(args: &BackupArgs, monitor: &Arc<Monitor>, host: &Host) -> Result<Ended, CliError> {
    let stats = monitor.stats();
    stats.set_role(Role::Backup);
    // It writes nothing until it is live, when the primary's lock is gone.
    let (config, backends) = args.vm.open(ImageLock::FirstRequest)?;
    let channel = args.pair.channel()?;
    let (arbiter, generation) = args.pair.arbiter()?;
    let mut machine = Machine::new(&config, Cpu::Model)?;
    machine.count_exits(stats.exits.clone());
    let ours = machine.header(&config, 0);
    let listener = BackupListener::bind(args.listen)?;
    // Signals are ours (the monitor started the host first) before anyone
    // can be told that this side waits.
    eprintln!("ftvm: backup: waiting for a primary on {}", args.listen);
    let check = |hello: &PrimaryHello| {
        pairing::compare(&hello.header, &ours)?;
        if hello.generation != generation {
            return Err(format!(
                "the primary pairs at go-live generation {}, this backup at {generation}",
                hello.generation
            ));
        }
        Ok(())
    };
    let (link, hello) = listener
        .accept(&channel, &check, &|| host.stop.requested().is_some())
        .map_err(|error| host.stopped_or("waiting for a primary", error))?;
    eprintln!("ftvm: backup: paired with a primary; replaying its log");
    stats.set_paired(true);
    monitor.emit(Event::Paired {
        peer: link
            .peer()
            .map_or_else(|| "unknown".into(), |peer| peer.to_string()),
    });

    let status = Rc::new(RefCell::new(LogStatus::default()));
    // The backup touches neither its disk nor its TAP before it goes live,
    // but opens them now, so that a missing one is found before pairing.
    let tap = backends.tap.clone();
    let mac = backends.mac;
    let backlog = Backlog::new(HostSink::new(host.devices(backends, false)?));
    let takeover = Takeover {
        arbiter,
        generation,
        owner: owner("backup", args.listen),
        stop: host.stop.clone(),
        live_source: Box::new(|ns| {
            if let Err(error) = host.attach_stdin() {
                tracing::warn!(%error, "the live backup takes no input from stdin");
            }
            if let (Some(tap), Some(mac)) = (&tap, mac) {
                go_live_on(host, tap, mac);
            }
            host.live_source_from(ns)
        }),
    };
    let mut source = BackupSource::new(
        link.from_primary(),
        link,
        status.clone(),
        backlog.clone(),
        takeover,
        monitor.clone(),
    );
    let mut sink = BackupSink { backlog, status };
    if let Err(error) = priority::set_thread_nice(priority::REPLAY_NICE) {
        tracing::warn!(%error, "the replay runs at normal CPU priority");
    }
    let result = machine.run(
        &mut source,
        &mut sink,
        &host.stop,
        hello.header.digest_interval,
    );
    let outcome = backup_end(&machine, &mut source, result, &args.pair);
    // The source's takeover borrows the host.
    drop(source);
    host.finish();
    if let Err(CliError::Run(error)) = &outcome
        && let Some(exit) = divergence_exit(error)
    {
        stats.divergences.inc();
        monitor.emit(Event::Diverged {
            exit,
            what: error.to_string(),
        });
    }
    outcome
}

/// The exit where a backup found that its replay diverged, if it did.
fn divergence_exit(error: &RunError) -> Option<u64> {
    match error {
        RunError::Core(CoreError::Source(SourceError::Divergence { exit, .. })) => Some(*exit),
        RunError::Core(CoreError::MissingTime { exit } | CoreError::MissingMsr { exit, .. }) => {
            Some(*exit)
        }
        _ => None,
    }
}

/// The new primary's network: frames that queued on its TAP while it was a
/// backup belong to a past it did not run; from now on they reach the
/// guest, and switches learn where the guest's MAC lives.
fn go_live_on(host: &Host, tap: &Tap, mac: [u8; 6]) {
    match tap.discard_queued() {
        Ok(0) => {}
        Ok(n) => {
            host.stats().net.discarded_frames.inc_by(n as u64);
            tracing::info!(frames = n, "discarded frames queued before going live");
        }
        Err(error) => tracing::warn!(%error, "cannot discard the TAP's queued frames"),
    }
    if let Err(error) = host.receive_from(tap) {
        tracing::warn!(%error, "the live backup receives no frames");
    }
    if let Err(error) = tap.announce(mac) {
        tracing::warn!(%error, "cannot announce the guest's MAC");
    }
}

/// How a backup's run ended: checked against the primary's end while it
/// was replaying, its own once live.
fn backup_end(
    machine: &Machine,
    source: &mut BackupSource<'_>,
    result: Result<VmEnd, RunError>,
    pair: &PairArgs,
) -> Result<Ended, CliError> {
    let (reason, status) = match &result {
        Ok(VmEnd::Stopped(stop)) => {
            eprintln!("ftvm: backup: {stop}");
            return Ok(Ended {
                status: stop.exit_status(),
                reason: end_reason(&result).to_string(),
            });
        }
        Ok(VmEnd::LogEnded) => {
            // The primary was stopped (or failed) there; so is the pair.
            let end = source
                .primary_end()
                .expect("LogEnded comes with the end record");
            (end.reason.clone(), end.status)
        }
        Ok(end) => (end_reason(&result), exit_status::of_end(*end)),
        // A failure of the guest the primary had too (KVM refusing the same
        // instruction) is checked against its end; anything else stops here.
        Err(error) if !exit_status::is_log_error(error) => {
            (end_reason(&result), exit_status::of_run_error(error))
        }
        Err(_) => return Err(CliError::Run(result.expect_err("an error"))),
    };
    let live = source.is_live();
    let described = reason.to_string();
    source
        .end(&machine.end(reason, status))
        .map_err(|error| CliError::Run(RunError::Core(error.into())))?;
    if !live {
        source
            .finish_replay(Duration::from_millis(pair.timeout_ms * 2))
            .map_err(|error| CliError::Run(RunError::Core(error.into())))?;
    }
    Ok(Ended {
        status,
        reason: described,
    })
}
