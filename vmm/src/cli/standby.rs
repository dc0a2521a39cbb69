//! `ftvm backup --join`: a standby. It waits for a live side to send its
//! running VM (kernel, configuration and CPU model come with it), checks
//! that its own disk is the live side's, and then is that side's backup,
//! replaying its log from the exit the state was taken after.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use ft_logging::Header;
use ft_logging::channel::{BackupLink, BackupListener, FromPrimary, PrimaryHello};
use shared_disk::{Arbiter, ImageLock};
use vm_state::{MachineState, PageSet};
use vmm::exit_status::{INVALID_DISK, PAIRING_FAILURE};
use vmm::ft::Start;
use vmm::host::HostDevices;
use vmm::machine::{Machine, RestoreError};
use vmm::monitor::{Event, Monitor, Role};
use vmm::vm_config::VmConfig;

use super::Ended;
use super::admit::{Refusal, admit};
use super::devices::Backends;
use super::error::CliError;
use super::ft::{BackupArgs, Side};
use super::live::Host;

/// How often the standby looks at the stop signal while it receives.
const POLL: Duration = Duration::from_millis(100);

pub fn standby(
    args: &BackupArgs,
    listener: BackupListener,
    monitor: &Arc<Monitor>,
    host: &Host,
) -> Result<Ended, CliError> {
    let stats = monitor.stats();
    stats.set_role(Role::Standby);
    let channel = args.pair.channel()?;
    let arbiter = args.pair.valid_arbiter()?;
    // It writes nothing until it is live, when the live side's lock is
    // gone. The MAC comes with the VM: the command line is not known yet.
    let backends = Backends::open(
        ImageLock::FirstRequest,
        args.devices.disk.as_ref(),
        args.devices.net.as_ref(),
        "",
    )?;
    // Signals are ours (the monitor started the host first) before anyone
    // can be told that this side waits.
    eprintln!("ftvm: standby: waiting for a live side on {}", args.listen);
    let check = |hello: &PrimaryHello| {
        offer(hello, &arbiter, args, &backends)?;
        Machine::prepare(&hello.header)
            .map_err(|error| Refusal::fatal(error.to_string(), error.exit_status()))
    };
    let (link, hello, mut machine) = admit(listener, args.listen, &channel, host, "standby", check)
        .map_err(|refused| {
            refused.into_error(host, "waiting for a live side", |reason, status| {
                CliError::Standby {
                    message: format!("refused the live side's VM: {reason}"),
                    status,
                }
            })
        })?;
    eprintln!(
        "ftvm: standby: a live side sends its VM ({}, {} MiB); receiving it",
        hello.header.kernel_name, hello.header.mem_mib
    );
    let config = VmConfig::from_header(&hello.header).map_err(|error| CliError::Standby {
        message: format!("the live side's VM configuration is invalid: {error}"),
        status: PAIRING_FAILURE,
    })?;
    let mac = hello.header.net.map(|net| net.mac);
    let devices = host.devices(backends, false)?;
    let (state, early) = receive(&mut machine, &link, &devices, host)?;
    let exit = state.exit();
    link.hold(exit);
    eprintln!(
        "ftvm: standby: holds the VM at exit {exit}; replaying the live side's log as its backup"
    );
    machine.count_exits(stats.exits.clone());
    stats.set_role(Role::Backup);
    stats.set_paired(true);
    monitor.emit(Event::Paired {
        peer: link
            .peer()
            .map_or_else(|| "unknown".into(), |peer| peer.to_string()),
    });
    let side = Side {
        role: "standby",
        machine,
        config,
        devices,
        mac,
        link,
        // The live side owns the generation it joins at; the new pair forms
        // at the next, once it moves the flag there.
        generation: hello.generation + 1,
        start: Start {
            after: Some((exit, state.core.platform().virtual_time_ns())),
            early,
        },
        resume: Some(state.ft),
        replay_interval: hello.header.digest_interval,
        arbiter,
        channel,
    };
    side.run(args, monitor, host)
}

/// Whether this standby takes the VM `hello` offers: a join, from the
/// owner of the flag's generation, of a guest whose disk and network card
/// this host has.
fn offer(
    hello: &PrimaryHello,
    arbiter: &Arbiter,
    args: &BackupArgs,
    backends: &Backends,
) -> Result<(), Refusal> {
    if !hello.join {
        return Err(Refusal::waiting(
            "this is a standby: it takes a running VM from a live side (`--reprotect`), not a new pair",
        ));
    }
    let flag = arbiter
        .status()
        .map_err(|error| Refusal::waiting(error.to_string()))?;
    if flag.generation != hello.generation || flag.owner.is_none() {
        return Err(Refusal::waiting(format!(
            "the live side owns go-live generation {}, but the flag shows {flag}",
            hello.generation
        )));
    }
    devices(&hello.header, args, backends)
}

/// Whether this host has the devices of the guest `header` describes.
fn devices(header: &Header, args: &BackupArgs, backends: &Backends) -> Result<(), Refusal> {
    let ours = backends.devices();
    let disk_path = || {
        args.devices
            .disk
            .as_ref()
            .map_or_else(String::new, |disk| disk.path().display().to_string())
    };
    match (header.disk, ours.disk) {
        (None, None) => {}
        (Some(theirs), None) => {
            return Err(Refusal::fatal(
                format!(
                    "the live side's guest has a disk ({theirs}); give this standby the same image with --disk"
                ),
                INVALID_DISK,
            ));
        }
        (None, Some(_)) => {
            return Err(Refusal::fatal(
                format!(
                    "the live side's guest has no disk, but this standby was given {}",
                    disk_path()
                ),
                PAIRING_FAILURE,
            ));
        }
        (Some(theirs), Some(mine)) => {
            if theirs.sectors != mine.sectors {
                return Err(Refusal::fatal(
                    format!(
                        "the disk image {} has {} sectors, the live side's {}: not the same image",
                        disk_path(),
                        mine.sectors,
                        theirs.sectors
                    ),
                    INVALID_DISK,
                ));
            }
            if mine.read_only && !theirs.read_only {
                return Err(Refusal::fatal(
                    format!(
                        "the disk image {} is read-only here, but the live side's guest writes it",
                        disk_path()
                    ),
                    INVALID_DISK,
                ));
            }
        }
    }
    let given_mac = args.devices.net.as_ref().map(|net| net.mac());
    match (header.net, given_mac) {
        (None, None) => Ok(()),
        (Some(theirs), None) => Err(Refusal::fatal(
            format!(
                "the live side's guest has a network card ({theirs}); give this standby --net tap=NAME"
            ),
            PAIRING_FAILURE,
        )),
        (None, Some(_)) => Err(Refusal::fatal(
            "the live side's guest has no network card, but this standby was given --net",
            PAIRING_FAILURE,
        )),
        (Some(theirs), Some(Some(mac))) if mac != theirs.mac => Err(Refusal::fatal(
            format!("--net gives another MAC than the live side's guest has ({theirs})"),
            PAIRING_FAILURE,
        )),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// Receives the VM into `machine`: pages, then the machine's state, then
/// the disk check (log messages that come meanwhile are kept for the
/// replay). Returns the state and those messages.
fn receive(
    machine: &mut Machine,
    link: &BackupLink,
    devices: &HostDevices,
    host: &Host,
) -> Result<(MachineState, Vec<FromPrimary>), CliError> {
    let failed = |message: String, status: u8| CliError::Standby { message, status };
    let from_primary = link.from_primary();
    let mut state: Option<MachineState> = None;
    let mut early = Vec::new();
    let mut pages = 0u64;
    loop {
        let message = match from_primary.recv_timeout(POLL) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(reason) = host.stop.requested() {
                    return Err(failed(
                        format!("{reason} while receiving the VM"),
                        reason.exit_status(),
                    ));
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => FromPrimary::Lost(ft_logging::channel::Lost {
                reason: "the link closed".into(),
                last_heard: std::time::Instant::now(),
            }),
        };
        match message {
            FromPrimary::Pages(bytes) => {
                let set = PageSet::decode(&bytes)
                    .map_err(RestoreError::from)
                    .map_err(|error| {
                        failed(
                            format!("the live side's pages cannot be taken: {error}"),
                            error.exit_status(),
                        )
                    })?;
                pages += set.len();
                machine.apply_pages(&set).map_err(|error| {
                    failed(
                        format!("the live side's pages do not fit: {error}"),
                        error.exit_status(),
                    )
                })?;
            }
            FromPrimary::State(bytes) => {
                let decoded = MachineState::decode(&bytes)
                    .map_err(RestoreError::from)
                    .and_then(|decoded| machine.apply_state(&decoded).map(|()| decoded))
                    .map_err(|error| {
                        failed(
                            format!("the live side's machine state cannot be restored: {error}"),
                            error.exit_status(),
                        )
                    })?;
                tracing::info!(exit = decoded.exit(), pages, "the machine's state is in");
                state = Some(decoded);
            }
            FromPrimary::DiskCheck(samples) => {
                let Some(state) = state.take() else {
                    return Err(failed(
                        "the live side sent its disk check before its state".into(),
                        PAIRING_FAILURE,
                    ));
                };
                check_disk(devices, &samples)?;
                return Ok((state, early));
            }
            message @ (FromPrimary::Batch { .. }
            | FromPrimary::Heartbeat { .. }
            | FromPrimary::Goodbye)
                if state.is_some() =>
            {
                early.push(message);
            }
            FromPrimary::Heartbeat { .. } => {}
            FromPrimary::Batch { .. } | FromPrimary::Goodbye => {
                return Err(failed(
                    "the live side ended the transfer before its state came".into(),
                    PAIRING_FAILURE,
                ));
            }
            FromPrimary::Lost(lost) => {
                return Err(failed(
                    format!(
                        "the live side was lost before the whole VM came ({}); this standby never goes live",
                        lost.reason
                    ),
                    PAIRING_FAILURE,
                ));
            }
        }
    }
}

/// Compares the live side's sampled sectors with this host's image.
fn check_disk(
    devices: &HostDevices,
    samples: &[ft_logging::channel::DiskSample],
) -> Result<(), CliError> {
    if samples.is_empty() {
        return Ok(());
    }
    let disk = devices.disk.as_ref().ok_or_else(|| CliError::Standby {
        message: "the live side checks a disk this standby does not have".into(),
        status: INVALID_DISK,
    })?;
    let ours = disk
        .sample(samples.iter().map(|sample| sample.sector).collect())
        .recv()
        .unwrap_or_default();
    if let Some(differs) = samples
        .iter()
        .zip(&ours)
        .find(|(theirs, mine)| theirs != mine)
        .map(|(theirs, _)| theirs.sector)
        .or_else(|| (ours.len() != samples.len()).then_some(0))
    {
        return Err(CliError::Standby {
            message: format!(
                "this host's disk image differs from the live side's (sector {differs}): not the same image"
            ),
            status: INVALID_DISK,
        });
    }
    Ok(())
}
