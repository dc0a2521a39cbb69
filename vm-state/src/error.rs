//! Why a VM state cannot be decoded or used.

use ftvm_core::state::InvalidState;

/// Why a state cannot be decoded or applied. A standby receiving a
/// transfer maps [`StateError::is_incompatible`] to exit status 117 and
/// every other error to 115; nothing of a refused state has been applied.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The bytes are not an ftvm VM state (no magic).
    #[error("not an ftvm VM state")]
    NotAState,
    /// The state ends early.
    #[error("the state is truncated: {found} bytes of {needed}")]
    Truncated {
        /// The bytes it says it has.
        needed: u64,
        /// The bytes there are.
        found: u64,
    },
    /// This many bytes follow the state.
    #[error("the state has {0} bytes past its end")]
    TrailingBytes(usize),
    /// A format version this ftvm does not read.
    #[error("the state is format version {found}; this ftvm reads version {supported}")]
    Version {
        /// The state's version.
        found: u32,
        /// The version this ftvm reads.
        supported: u32,
    },
    /// The checksum does not match: the state is corrupted.
    #[error("the state is corrupted: its checksum does not match")]
    Checksum,
    /// A state of another kind than expected (a whole VM, a machine, pages).
    #[error("the state is {found} where {expected} was expected")]
    Kind {
        /// The kind expected.
        expected: &'static str,
        /// The kind found.
        found: &'static str,
    },
    /// The state was taken on another platform version.
    #[error("the state was taken on platform `{found}`; this ftvm provides `{ours}`")]
    Platform {
        /// Its platform.
        found: String,
        /// This ftvm's.
        ours: &'static str,
    },
    /// The body does not decode.
    #[error("the state does not decode: {0}")]
    Malformed(#[source] postcard::Error),
    /// The state decodes but cannot be (the message says why).
    #[error("the state is invalid: {0}")]
    Invalid(String),
    /// A device's state is refused.
    #[error(transparent)]
    Device(#[from] InvalidState),
}

impl StateError {
    /// Whether the state is sound but of a platform this ftvm does not
    /// provide (status 117), rather than damaged or invalid (115). A CPU
    /// model the host cannot present is found when the VM is built.
    pub fn is_incompatible(&self) -> bool {
        matches!(self, StateError::Platform { .. })
    }
}
