//! ftvm's exit statuses. As with `docker run`, the guest's own status passes
//! through, and ftvm's failures use a small table at the top of the range
//! (a guest may choose the same numbers; the message on stderr tells).

use crate::vstate::{RunError, VmEnd};
use ft_logging::SourceError;
use ftvm_core::effect::GuestEnd;
use ftvm_core::exit_handler::CoreError;

/// The gdb client of `ftvm replay --gdb` broke the remote protocol.
pub const GDB_PROTOCOL: u8 = 110;
/// The TAP device for `--net` cannot be opened or created.
pub const NETWORK_FAILURE: u8 = 112;
/// The disk image is missing, unreadable or not a raw image of whole
/// sectors.
pub const INVALID_DISK: u8 = 113;
/// The go-live flag's file is missing or invalid.
pub const ARBITER_FAILURE: u8 = 114;
/// A primary and a backup could not pair: the key, the protocol, or their
/// configurations differ.
pub const PAIRING_FAILURE: u8 = 115;
/// This side may not be live: it lost the go-live flag's test-and-set, or
/// the flag says another side is live.
pub const NOT_LIVE: u8 = 116;
/// This host cannot present the platform a trace was recorded on.
pub const INCOMPATIBLE_HOST: u8 = 117;
/// A replay took another path than the recorded run.
pub const DIVERGENCE: u8 = 118;
/// A trace cannot be read, or is not a valid trace.
pub const INVALID_TRACE: u8 = 119;
/// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
pub const GUEST_TRIPLE_FAULT: u8 = 121;
/// The guest ran an instruction the host's KVM cannot emulate.
pub const UNEMULATED_INSTRUCTION: u8 = 122;
/// KVM is missing or failed.
pub const KVM_FAILURE: u8 = 123;
/// The kernel is not a valid PVH ELF64 image, or does not fit.
pub const INVALID_KERNEL: u8 = 124;
/// Bad command-line usage.
pub const USAGE: u8 = 125;
/// The kernel file exists but cannot be read.
pub const UNREADABLE_KERNEL: u8 = 126;
/// The kernel is neither a file nor a built-in image.
pub const KERNEL_NOT_FOUND: u8 = 127;
/// Writing the guest's console or a trace failed.
pub const HOST_IO_FAILURE: u8 = 120;

/// The status of a run that ended without an ftvm failure.
pub fn of_end(end: VmEnd) -> u8 {
    match end {
        VmEnd::Guest(GuestEnd::Exit(status)) => status,
        VmEnd::Guest(GuestEnd::Reset | GuestEnd::Halted | GuestEnd::Idle) => 0,
        VmEnd::Guest(GuestEnd::TripleFault) => GUEST_TRIPLE_FAULT,
        VmEnd::Stopped(reason) => reason.exit_status(),
        // A replay ends as the recorded run did, which its caller knows;
        // without that, a log that ends early is not a valid log.
        VmEnd::LogEnded => INVALID_TRACE,
    }
}

/// The status of a run that failed with `error`.
pub fn of_run_error(error: &RunError) -> u8 {
    match error {
        RunError::Unemulated(_) => UNEMULATED_INSTRUCTION,
        RunError::Core(
            CoreError::Sink(_)
            | CoreError::Source(SourceError::LogWrite(_) | SourceError::Output(_)),
        ) => HOST_IO_FAILURE,
        RunError::Core(CoreError::Source(SourceError::Log(_))) => INVALID_TRACE,
        RunError::Core(CoreError::Source(SourceError::Fenced(_))) => NOT_LIVE,
        RunError::Core(
            CoreError::Source(SourceError::Divergence { .. })
            | CoreError::MissingTime { .. }
            | CoreError::MissingMsr { .. },
        ) => DIVERGENCE,
        _ => KVM_FAILURE,
    }
}

/// Errors that come from the log rather than from running the guest.
pub fn is_log_error(error: &RunError) -> bool {
    matches!(
        error,
        RunError::Core(
            CoreError::Source(_) | CoreError::MissingTime { .. } | CoreError::MissingMsr { .. }
        )
    )
}
