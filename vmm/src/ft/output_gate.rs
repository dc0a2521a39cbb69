//! The output rule (DESIGN.md §4): the primary releases an output (console
//! bytes, a disk write or flush) only once the backup has acknowledged the
//! log through the exit that produced it.
//! The guest keeps running meanwhile; only the output waits. And it is
//! released only while the primary holds its lease, so that a primary that
//! was paused or cut off cannot release output once its backup may be live.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ft_logging::channel::Released;
use ft_logging::{DiskRequest, OutputSink, SinkError};

use crate::host::HostDevices;

/// An output waiting for its acknowledgement.
#[derive(Debug)]
pub enum Held {
    Console(Vec<u8>),
    Disk(DiskRequest),
    Frame(Vec<u8>),
}

/// Outputs held until the backup acknowledges them, shared by the vCPU
/// thread (which holds outputs) and the thread that reads acknowledgements
/// (which releases them).
pub struct OutputGate<W> {
    state: Mutex<GateState<W>>,
    released: Condvar,
    /// Console bytes and frames released so far; the backup learns them
    /// with every batch and heartbeat, and re-emits only what comes after
    /// them on takeover.
    released_bytes: AtomicU64,
    released_frames: AtomicU64,
    /// Whether the primary holds its lease now.
    leased: Box<dyn Fn() -> bool + Send + Sync>,
}

impl<W: std::fmt::Debug> std::fmt::Debug for OutputGate<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputGate")
            .field("state", &self.state)
            .field("released_bytes", &self.released_bytes)
            .field("released_frames", &self.released_frames)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct GateState<W> {
    out: W,
    devices: HostDevices,
    held: VecDeque<(u64, Held)>,
    acked: u64,
    /// No backup: outputs go out at once.
    solo: bool,
    /// When each held output was held.
    held_since: VecDeque<Instant>,
}

impl<W: Write> OutputGate<W> {
    /// A gate releasing console output into `out` and the rest to
    /// `devices`; while paired, only when `leased` says the primary holds
    /// its lease.
    pub fn new(
        out: W,
        devices: HostDevices,
        solo: bool,
        leased: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                out,
                devices,
                held: VecDeque::new(),
                acked: 0,
                solo,
                held_since: VecDeque::new(),
            }),
            released: Condvar::new(),
            released_bytes: AtomicU64::new(0),
            released_frames: AtomicU64::new(0),
            leased,
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState<W>> {
        // A poisoned gate means a thread panicked mid-release: nothing to save.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Output of exit `exit`: out at once when solo or already acknowledged,
    /// else held.
    pub fn hold(&self, exit: u64, output: Held) -> Result<(), SinkError> {
        let mut state = self.lock();
        if state.solo || (exit <= state.acked && state.held.is_empty() && (self.leased)()) {
            return self.emit(&mut state, output);
        }
        state.held.push_back((exit, output));
        state.held_since.push_back(Instant::now());
        state.devices.stats.held_outputs.inc();
        Ok(())
    }

    /// A disk read is no output: it goes to the disk at once. Virtio-blk
    /// does not order requests in flight, so it may pass a held write.
    pub fn read(&self, request: DiskRequest) -> Result<(), SinkError> {
        self.lock().devices.disk(request)
    }

    fn emit(&self, state: &mut GateState<W>, output: Held) -> Result<(), SinkError> {
        match output {
            Held::Console(bytes) => {
                state.out.write_all(&bytes).map_err(SinkError::Console)?;
                self.released_bytes
                    .fetch_add(bytes.len() as u64, Ordering::SeqCst);
                Ok(())
            }
            Held::Disk(request) => state.devices.disk(request),
            Held::Frame(frame) => {
                state.devices.send(&frame)?;
                self.released_frames.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// The backup acknowledged the log through `exit`: release what it
    /// covers, if the lease holds (a later acknowledgement renews it).
    pub fn ack(&self, exit: u64) -> Result<(), SinkError> {
        let mut state = self.lock();
        state.acked = state.acked.max(exit);
        if !(self.leased)() {
            return Ok(());
        }
        let acked = state.acked;
        self.release(&mut state, acked)
    }

    /// The backup is gone and this side won the go-live flag: release
    /// everything, and from now on outputs go out at once.
    pub fn go_solo(&self) -> Result<(), SinkError> {
        let mut state = self.lock();
        state.solo = true;
        self.release(&mut state, u64::MAX)
    }

    fn release(&self, state: &mut GateState<W>, through: u64) -> Result<(), SinkError> {
        let mut any = false;
        while state.held.front().is_some_and(|(exit, _)| *exit <= through) {
            let (_, output) = state.held.pop_front().expect("checked non-empty");
            if let Some(since) = state.held_since.pop_front() {
                let stats = &state.devices.stats;
                stats.held_outputs.dec();
                stats
                    .output_hold_seconds
                    .observe(since.elapsed().as_secs_f64());
            }
            self.emit(state, output)?;
            any = true;
        }
        if any {
            state.out.flush().map_err(SinkError::Console)?;
            self.released.notify_all();
        }
        Ok(())
    }

    /// The latest exit with output still held, if any.
    pub fn last_held_exit(&self) -> Option<u64> {
        self.lock().held.back().map(|(exit, _)| *exit)
    }

    /// How much output has been released.
    pub fn released(&self) -> Released {
        Released {
            console: self.released_bytes.load(Ordering::SeqCst),
            frames: self.released_frames.load(Ordering::SeqCst),
        }
    }

    /// Waits until nothing is held, or `timeout` passes; true when empty.
    pub fn drain(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .released
            .wait_timeout_while(state, timeout, |state| !state.held.is_empty())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.held.is_empty()
    }

    pub fn flush(&self) -> io::Result<()> {
        self.lock().out.flush()
    }
}

/// The primary's output sink: every output goes through the gate.
#[derive(Debug)]
pub struct GatedSink<W>(pub Arc<OutputGate<W>>);

impl<W: Write> OutputSink for GatedSink<W> {
    fn console(&mut self, exit: u64, bytes: &[u8]) -> Result<(), SinkError> {
        self.0.hold(exit, Held::Console(bytes.to_vec()))
    }

    fn disk(&mut self, exit: u64, request: DiskRequest) -> Result<(), SinkError> {
        if request.is_output() {
            self.0.hold(exit, Held::Disk(request))
        } else {
            self.0.read(request)
        }
    }

    fn net(&mut self, exit: u64, frame: Vec<u8>) -> Result<(), SinkError> {
        self.0.hold(exit, Held::Frame(frame))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.0.flush().map_err(SinkError::Console)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn always_leased() -> Arc<OutputGate<Vec<u8>>> {
        OutputGate::new(Vec::new(), HostDevices::default(), false, Box::new(|| true))
    }

    fn text(bytes: &[u8]) -> Held {
        Held::Console(bytes.to_vec())
    }

    fn written(gate: &OutputGate<Vec<u8>>) -> String {
        String::from_utf8(gate.lock().out.clone()).unwrap()
    }

    #[test]
    fn outputs_wait_for_the_acknowledgement_of_their_exit() {
        let gate = always_leased();
        gate.hold(5, text(b"a")).unwrap();
        gate.hold(7, text(b"b")).unwrap();
        gate.hold(9, text(b"c")).unwrap();
        assert_eq!(written(&gate), "");
        gate.ack(6).unwrap();
        assert_eq!(written(&gate), "a");
        assert_eq!(gate.released().console, 1);
        gate.ack(9).unwrap();
        assert_eq!(written(&gate), "abc");
        assert_eq!(gate.last_held_exit(), None);
        // Already acknowledged and nothing ahead of it: out at once.
        gate.hold(8, text(b"d")).unwrap();
        assert_eq!(written(&gate), "abcd");
    }

    #[test]
    fn an_acknowledged_output_never_overtakes_a_held_one() {
        let gate = always_leased();
        gate.hold(10, text(b"x")).unwrap();
        gate.ack(3).unwrap();
        gate.hold(2, text(b"y")).unwrap();
        assert_eq!(written(&gate), "");
        gate.ack(10).unwrap();
        assert_eq!(written(&gate), "xy");
    }

    #[test]
    fn without_the_lease_nothing_is_released_until_it_is_renewed() {
        let lease = Arc::new(AtomicBool::new(false));
        let leased = lease.clone();
        let gate = OutputGate::new(
            Vec::new(),
            HostDevices::default(),
            false,
            Box::new(move || leased.load(Ordering::SeqCst)),
        );
        gate.hold(1, text(b"a")).unwrap();
        gate.ack(1).unwrap();
        gate.hold(1, text(b"b")).unwrap();
        assert_eq!(written(&gate), "", "released without the lease");
        lease.store(true, Ordering::SeqCst);
        gate.ack(1).unwrap();
        assert_eq!(written(&gate), "ab");
    }

    #[test]
    fn going_solo_releases_everything_and_stops_holding() {
        let gate = OutputGate::new(
            Vec::new(),
            HostDevices::default(),
            false,
            Box::new(|| false),
        );
        gate.hold(1, text(b"held ")).unwrap();
        assert!(!gate.drain(Duration::from_millis(10)));
        gate.go_solo().unwrap();
        assert!(gate.drain(Duration::from_millis(10)));
        gate.hold(2, text(b"now")).unwrap();
        assert_eq!(written(&gate), "held now");
    }
}
