//! `ftvm primary` and `ftvm backup`: one guest on two hosts; with
//! `--join`, a backup is a standby (`standby.rs`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use ft_logging::channel::{
    AuthKey, BackupLink, BackupListener, ChannelConfig, ChannelError, PrimaryHello, PrimaryLink,
    dial,
};
use ft_logging::{EventSource, SourceError};
use ftvm_core::exit_handler::CoreError;
use shared_disk::{Arbiter, FlagState, ImageLock, Outcome};
use vm_state::FtState;
use vmm::exit_status;
use vmm::ft::{
    self, Backlog, BackupSink, BackupSource, Cutovers, GatedSink, Limits, LogStatus, OutputGate,
    PairStatus, PrimarySource, Protection, ProtectorConfig, Reporter, Start, Takeover, Watched,
    pairing,
};
use vmm::host::{HostDevices, Tap};
use vmm::machine::{Cpu, Machine, end_reason};
use vmm::monitor::{Event, Monitor, Role};
use vmm::replaying::replayed_end;
use vmm::vm_config::{DEFAULT_MEM_MIB, VmConfig};
use vmm::vstate::{RunError, VmEnd};

use super::admit::{Refusal, admit};
use super::error::CliError;
use super::live::Host;
use super::run::{DEFAULT_DIGEST_INTERVAL, conclude};
use super::{DeviceArgs, Ended, MonitorArgs, VmArgs, standby};

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
    pub(super) fn channel(&self) -> Result<ChannelConfig, CliError> {
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

    /// The arbiter, once its file is found to be a valid flag (a standby
    /// starts while the live side owns it).
    pub(super) fn valid_arbiter(&self) -> Result<Arbiter, CliError> {
        let arbiter = Arbiter::new(&self.arbiter);
        arbiter.status()?;
        Ok(arbiter)
    }
}

/// What a side needs once it is live: a primary, or a backup that took
/// over (which is then a primary in every way).
#[derive(Debug, Args)]
pub struct LiveArgs {
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
    /// Standbys (`ftvm backup --join`) to bring into sync, the first that
    /// answers, whenever this side runs alone.
    #[arg(long, value_name = "ADDR:PORT[,ADDR:PORT...]", value_delimiter = ',')]
    reprotect: Vec<SocketAddr>,
}

impl LiveArgs {
    fn limits(&self) -> Limits {
        Limits {
            buffer_bytes: self.log_buffer_mib << 20,
            max_lag_ns: self.max_lag_ms * 1_000_000,
        }
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
    #[command(flatten)]
    live: LiveArgs,
    #[command(flatten)]
    pub vm: VmArgs,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The address to listen on for the primary's log (or, with --join,
    /// for a live side's running VM).
    #[arg(long, value_name = "ADDR:PORT")]
    pub(super) listen: SocketAddr,
    #[command(flatten)]
    pub(super) pair: PairArgs,
    /// Be a standby: wait for a live side to send its running VM (kernel,
    /// configuration and CPU model come with it), then be its backup.
    #[arg(long)]
    join: bool,
    #[command(flatten)]
    live: LiveArgs,
    /// Kernel: a PVH ELF64 file, or the name of a built-in image.
    #[arg(
        long,
        value_name = "IMG",
        required_unless_present = "join",
        conflicts_with = "join"
    )]
    kernel: Option<String>,
    /// Guest RAM in MiB.
    #[arg(long, value_name = "N", conflicts_with = "join")]
    mem_mib: Option<u32>,
    /// Command line passed to the guest in hvm_start_info.
    #[arg(long, value_name = "S", conflicts_with = "join")]
    cmdline: Option<String>,
    #[command(flatten)]
    pub(super) devices: DeviceArgs,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

impl BackupArgs {
    /// What this side starts as, in its `started` event.
    pub fn role(&self) -> &'static str {
        if self.join { "standby" } else { "backup" }
    }

    /// The kernel it was given; a standby's comes with the VM.
    pub fn kernel(&self) -> &str {
        self.kernel.as_deref().unwrap_or("")
    }

    /// The VM of a backup that is not a standby.
    fn vm(&self) -> VmArgs {
        VmArgs {
            kernel: self.kernel.clone().unwrap_or_default(),
            mem_mib: self.mem_mib.unwrap_or(DEFAULT_MEM_MIB),
            cmdline: self.cmdline.clone().unwrap_or_default(),
            devices: self.devices.clone(),
        }
    }
}

/// A name for this side in the go-live flag.
pub(super) fn owner(role: &str, address: SocketAddr) -> String {
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
    let header = machine.header(&config, args.live.digest_every);
    let hello = PrimaryHello {
        header: header.clone(),
        generation,
        join: false,
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

    let gate = OutputGate::new(std::io::stdout(), host.devices(backends, true)?);
    let cutovers = Cutovers::new(host.pause_signal());
    let mut source = PrimarySource::new(
        host.live_source(),
        gate.clone(),
        cutovers.clone(),
        host.stop.clone(),
        args.live.limits(),
        stats.clone(),
        0,
    );
    let initial = link.map(|link| {
        eprintln!("ftvm: primary: paired with the backup at {}", args.backup);
        stats.set_paired(true);
        monitor.emit(Event::Paired {
            peer: args.backup.to_string(),
        });
        let status = PairStatus::new(0, 0);
        let lease = link.lease();
        // The backup goes live after a full timeout of silence; half of it
        // leaves room for clocks that run at slightly different rates.
        let span = channel.timeout / 2;
        gate.pair(0, Arc::new(move || lease.holds(span)));
        source.pair(link.sender(), status.clone(), 0);
        let watched = Watched::initial(&link, status, args.backup);
        (link, watched)
    });
    let protection = Protection::start(
        ProtectorConfig {
            arbiter,
            owner,
            generation,
            channel,
            standbys: args.live.reprotect.clone(),
            header,
            tracker: machine.memory_tracker(),
            reporter: Reporter {
                role: "primary",
                monitor: monitor.clone(),
            },
        },
        gate.clone(),
        cutovers.clone(),
        host.stop.clone(),
        host.input_sender(),
        initial,
    )
    .map_err(CliError::Host)?;
    let result = ft::run(
        &mut machine,
        &mut source,
        &mut GatedSink(gate),
        &host.stop,
        cutovers.pause(),
        args.live.digest_every,
        args.live.digest_every,
    );
    let status = match &result {
        Ok(end) => exit_status::of_end(*end),
        Err(error) => exit_status::of_run_error(error),
    };
    // The backup learns how the run ended, so it ends too.
    let ended = source.end(&machine.end(end_reason(&result), status));
    protection.finish(host.stop.requested().is_some());
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

pub fn backup(
    args: &BackupArgs,
    listener: BackupListener,
    monitor: &Arc<Monitor>,
    host: &Host,
) -> Result<Ended, CliError> {
    if args.join {
        return standby::standby(args, listener, monitor, host);
    }
    let stats = monitor.stats();
    stats.set_role(Role::Backup);
    // It writes nothing until it is live, when the primary's lock is gone.
    let (config, backends) = args.vm().open(ImageLock::FirstRequest)?;
    let channel = args.pair.channel()?;
    let (arbiter, generation) = args.pair.arbiter()?;
    let mut machine = Machine::new(&config, Cpu::Model)?;
    machine.count_exits(stats.exits.clone());
    let ours = machine.header(&config, 0);
    // Signals are ours (the monitor started the host first) before anyone
    // can be told that this side waits.
    eprintln!("ftvm: backup: waiting for a primary on {}", args.listen);
    let check = |hello: &PrimaryHello| {
        if hello.join {
            return Err(Refusal::waiting(
                "this backup waits for a primary to form a pair with; a running VM goes to a standby (`ftvm backup --join`)",
            ));
        }
        let mismatch = |reason| Refusal::fatal(reason, exit_status::PAIRING_FAILURE);
        pairing::compare(&hello.header, &ours).map_err(mismatch)?;
        if hello.generation != generation {
            return Err(mismatch(format!(
                "the primary pairs at go-live generation {}, this backup at {generation}",
                hello.generation
            )));
        }
        Ok(())
    };
    let (link, hello, ()) =
        admit(listener, args.listen, &channel, host, "backup", check).map_err(|refused| {
            refused.into_error(host, "waiting for a primary", |reason, _| {
                ChannelError::Mismatch(reason).into()
            })
        })?;
    eprintln!("ftvm: backup: paired with a primary; replaying its log");
    stats.set_paired(true);
    monitor.emit(Event::Paired {
        peer: link
            .peer()
            .map_or_else(|| "unknown".into(), |peer| peer.to_string()),
    });
    let mac = backends.mac;
    let devices = host.devices(backends, false)?;
    let side = Side {
        role: "backup",
        machine,
        config,
        devices,
        mac,
        link,
        generation,
        start: Start::default(),
        resume: None,
        replay_interval: hello.header.digest_interval,
        arbiter,
        channel,
    };
    side.run(args, monitor, host)
}

/// A backup with its VM and its link to the live side, ready to replay.
pub(super) struct Side {
    /// "backup" or "standby", for messages and the flag.
    pub role: &'static str,
    pub machine: Machine,
    pub config: VmConfig,
    pub devices: HostDevices,
    /// The guest's MAC, announced when it goes live.
    pub mac: Option<[u8; 6]>,
    pub link: BackupLink,
    /// The generation of the go-live flag the pair formed at.
    pub generation: u64,
    pub start: Start,
    /// A standby's FT bookkeeping from the transferred state.
    pub resume: Option<FtState>,
    /// The primary's digest interval.
    pub replay_interval: u64,
    pub arbiter: Arbiter,
    pub channel: ChannelConfig,
}

impl Side {
    /// Replays the live side's log; once the live side is lost and this
    /// side won the flag, runs as a primary that protects itself with the
    /// standbys of `--reprotect`.
    pub(super) fn run(
        self,
        args: &BackupArgs,
        monitor: &Arc<Monitor>,
        host: &Host,
    ) -> Result<Ended, CliError> {
        let Side {
            role,
            mut machine,
            config,
            devices,
            mac,
            link,
            generation,
            start,
            resume,
            replay_interval,
            arbiter,
            channel,
        } = self;
        let stats = monitor.stats();
        let status = Rc::new(RefCell::new(LogStatus::default()));
        // The backup touches neither its disk nor its TAP before it goes
        // live, but opened them before pairing, so that a missing one was
        // found then.
        let tap = devices.tap.clone();
        let gate = OutputGate::new(std::io::stdout(), devices);
        let backlog = Backlog::new(GatedSink(gate.clone()));
        if let Some(ft) = &resume {
            backlog.borrow_mut().resume(ft);
        }
        let cutovers = Cutovers::new(host.pause_signal());
        let protection: RefCell<Option<Protection>> = RefCell::new(None);
        let owner = owner(role, args.listen);
        let header = machine.header(&config, args.live.digest_every);
        let tracker = machine.memory_tracker();
        let takeover = Takeover {
            role,
            arbiter: arbiter.clone(),
            generation,
            owner: owner.clone(),
            stop: host.stop.clone(),
            go_live: Box::new(|ns| {
                if let Err(error) = host.attach_stdin() {
                    tracing::warn!(%error, "the live backup takes no input from stdin");
                }
                if let (Some(tap), Some(mac)) = (&tap, mac) {
                    go_live_on(host, tap, mac);
                }
                let config = ProtectorConfig {
                    arbiter: arbiter.clone(),
                    owner: owner.clone(),
                    generation,
                    channel: channel.clone(),
                    standbys: args.live.reprotect.clone(),
                    header: header.clone(),
                    tracker: tracker.clone(),
                    reporter: Reporter {
                        role,
                        monitor: monitor.clone(),
                    },
                };
                match Protection::start(
                    config,
                    gate.clone(),
                    cutovers.clone(),
                    host.stop.clone(),
                    host.input_sender(),
                    None,
                ) {
                    Ok(started) => *protection.borrow_mut() = Some(started),
                    Err(error) => {
                        tracing::warn!(%error, "no re-protection: cannot start its thread")
                    }
                }
                PrimarySource::new(
                    host.live_source_from(ns),
                    gate.clone(),
                    cutovers.clone(),
                    host.stop.clone(),
                    args.live.limits(),
                    stats.clone(),
                    ns,
                )
            }),
        };
        let mut source = BackupSource::new(
            link,
            status.clone(),
            backlog.clone(),
            takeover,
            start,
            monitor.clone(),
        );
        let mut sink = BackupSink { backlog, status };
        let result = ft::run(
            &mut machine,
            &mut source,
            &mut sink,
            &host.stop,
            cutovers.pause(),
            replay_interval,
            args.live.digest_every,
        );
        let outcome = backup_end(&machine, &mut source, result, &args.pair, role);
        // The source's takeover borrows the host.
        drop(source);
        if let Some(protection) = protection.into_inner() {
            protection.finish(host.stop.requested().is_some());
        }
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
    role: &str,
) -> Result<Ended, CliError> {
    if let Ok(VmEnd::Stopped(stop)) = &result {
        eprintln!("ftvm: {role}: {stop}");
        return Ok(Ended {
            status: stop.exit_status(),
            reason: end_reason(&result).to_string(),
        });
    }
    // Where the primary was stopped (or failed), so is the pair.
    let Some((reason, status)) = replayed_end(&result, source.primary_end()) else {
        return Err(CliError::Run(result.expect_err("an error from the log")));
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
