use ftvm_core::state::InvalidState;

/// Why a state cannot be decoded or applied. A standby receiving a
/// transfer maps [`StateError::is_incompatible`] to exit status 117 and
/// every other error to 115; nothing of a refused state has been applied.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("not an ftvm VM state")]
    NotAState,
    #[error("the state is truncated: {found} bytes of {needed}")]
    Truncated { needed: u64, found: u64 },
    #[error("the state has {0} bytes past its end")]
    TrailingBytes(usize),
    #[error("the state is format version {found}; this ftvm reads version {supported}")]
    Version { found: u32, supported: u32 },
    #[error("the state is corrupted: its checksum does not match")]
    Checksum,
    #[error("the state is {found} where {expected} was expected")]
    Kind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("the state was taken on platform `{found}`; this ftvm provides `{ours}`")]
    Platform { found: String, ours: &'static str },
    #[error("the state does not decode: {0}")]
    Malformed(#[source] postcard::Error),
    #[error("the state is invalid: {0}")]
    Invalid(String),
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
