//! The primary's lease: how recently the backup acknowledged a message,
//! dated by when the primary sent that message.
//!
//! The backup goes live only after a whole timeout of silence from the
//! primary, counted from a receipt that came after the send. So while the
//! latest acknowledged message was sent less than (part of) a timeout ago,
//! the backup cannot be live, and the primary may release output. A receipt
//! time would not do: a primary paused for seconds would read a stale
//! acknowledgement on waking and think it fresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// No acknowledged message yet.
const NONE: u64 = u64::MAX;

/// Shared by the link's writer (which dates what it sends), its reader
/// (which renews from acknowledgements) and the primary.
#[derive(Debug, Clone)]
pub struct Lease {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    acked_sent_ns: AtomicU64,
}

impl Lease {
    pub(super) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                acked_sent_ns: AtomicU64::new(NONE),
            }),
        }
    }

    /// The date of a message sent now.
    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    /// The backup acknowledged the message dated `sent_ns` (and so all
    /// before it).
    pub(super) fn renew(&self, sent_ns: u64) {
        let acked = &self.inner.acked_sent_ns;
        let mut current = acked.load(Ordering::SeqCst);
        while current == NONE || current < sent_ns {
            match acked.compare_exchange(current, sent_ns, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Whether the latest acknowledged message was sent less than `span` ago.
    pub fn holds(&self, span: Duration) -> bool {
        match self.inner.acked_sent_ns.load(Ordering::SeqCst) {
            NONE => false,
            sent_ns => {
                let sent = self.inner.start + Duration::from_nanos(sent_ns);
                sent.elapsed() < span
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_for_its_span_after_the_acknowledged_send() {
        let lease = Lease::new();
        assert!(
            !lease.holds(Duration::from_secs(60)),
            "nothing acknowledged yet"
        );
        lease.renew(lease.now_ns());
        assert!(lease.holds(Duration::from_secs(60)));
        assert!(!lease.holds(Duration::ZERO));
        // An older acknowledgement never shortens it.
        lease.renew(0);
        assert!(lease.holds(Duration::from_secs(60)));
    }

    #[test]
    fn a_stale_acknowledgement_does_not_renew_it() {
        let lease = Lease::new();
        let sent = lease.now_ns();
        std::thread::sleep(Duration::from_millis(30));
        // Read only now, as by a primary that was paused.
        lease.renew(sent);
        assert!(!lease.holds(Duration::from_millis(20)));
    }
}
