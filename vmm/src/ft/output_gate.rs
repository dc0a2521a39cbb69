//! The output rule (docs/DESIGN.md §4): the primary releases an output (console
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
use crate::monitor::Stats;

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
///
/// Two locks: `state` (what is held, what is acknowledged) is held only to
/// move outputs in or out of the queue; `emitter` (stdout, the disk, the
/// TAP) is held while they are written. A releaser takes the emitter before
/// it lets the state go, so outputs leave in order, and the vCPU thread
/// holding its next output never waits for a write. What the vCPU thread
/// reads at every exit (the last held exit, the release counts) are atomics.
pub struct OutputGate<W> {
    state: Mutex<GateState>,
    /// Signalled when held outputs have been released.
    released: Condvar,
    emitter: Mutex<Emitter<W>>,
    /// The latest exit with output still held; `NONE_HELD` when none is.
    last_held: AtomicU64,
    /// Console bytes and frames released so far; the backup learns them
    /// with every batch and heartbeat, and re-emits only what comes after
    /// them on takeover.
    released_bytes: AtomicU64,
    released_frames: AtomicU64,
    stats: Arc<Stats>,
    /// Whether the primary holds its lease now.
    leased: Box<dyn Fn() -> bool + Send + Sync>,
}

/// `last_held` when nothing is held (exit 0, boot, has no outputs).
const NONE_HELD: u64 = 0;

impl<W: std::fmt::Debug> std::fmt::Debug for OutputGate<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputGate")
            .field("state", &self.state)
            .field("emitter", &self.emitter)
            .field("released_bytes", &self.released_bytes)
            .field("released_frames", &self.released_frames)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct GateState {
    held: VecDeque<HeldOutput>,
    acked: u64,
    /// No backup: outputs go out at once.
    solo: bool,
    /// Batches taken off the queue and being written.
    emitting: usize,
}

#[derive(Debug)]
struct HeldOutput {
    exit: u64,
    output: Held,
    since: Instant,
}

/// Where released outputs go.
#[derive(Debug)]
struct Emitter<W> {
    out: W,
    devices: HostDevices,
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
                held: VecDeque::new(),
                acked: 0,
                solo,
                emitting: 0,
            }),
            released: Condvar::new(),
            stats: devices.stats.clone(),
            emitter: Mutex::new(Emitter { out, devices }),
            last_held: AtomicU64::new(NONE_HELD),
            released_bytes: AtomicU64::new(0),
            released_frames: AtomicU64::new(0),
            leased,
        })
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        // A poisoned gate means a thread panicked mid-release: nothing to save.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emitter(&self) -> MutexGuard<'_, Emitter<W>> {
        self.emitter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Output of exit `exit`: out at once when solo or already acknowledged,
    /// else held.
    pub fn hold(&self, exit: u64, output: Held) -> Result<(), SinkError> {
        let mut state = self.state();
        let at_once = state.solo
            || (exit <= state.acked
                && state.held.is_empty()
                && state.emitting == 0
                && (self.leased)());
        if at_once {
            let mut emitter = self.emitter();
            drop(state);
            return self.emit(&mut emitter, output);
        }
        state.held.push_back(HeldOutput {
            exit,
            output,
            since: Instant::now(),
        });
        self.last_held.store(exit, Ordering::Release);
        self.stats.held_outputs.inc();
        Ok(())
    }

    /// A disk read is no output: it goes to the disk at once. Virtio-blk
    /// does not order requests in flight, so it may pass a held write.
    pub fn read(&self, request: DiskRequest) -> Result<(), SinkError> {
        self.emitter().devices.disk(request)
    }

    fn emit(&self, emitter: &mut Emitter<W>, output: Held) -> Result<(), SinkError> {
        match output {
            Held::Console(bytes) => {
                emitter.out.write_all(&bytes).map_err(SinkError::Console)?;
                self.released_bytes
                    .fetch_add(bytes.len() as u64, Ordering::SeqCst);
                Ok(())
            }
            Held::Disk(request) => emitter.devices.disk(request),
            Held::Frame(frame) => {
                emitter.devices.send(&frame)?;
                self.released_frames.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// The backup acknowledged the log through `exit`: release what it
    /// covers, if the lease holds (a later acknowledgement renews it).
    pub fn ack(&self, exit: u64) -> Result<(), SinkError> {
        let mut state = self.state();
        state.acked = state.acked.max(exit);
        if !(self.leased)() {
            return Ok(());
        }
        let acked = state.acked;
        self.release(state, acked)
    }

    /// The backup is gone and this side won the go-live flag: release
    /// everything, and from now on outputs go out at once.
    pub fn go_solo(&self) -> Result<(), SinkError> {
        let mut state = self.state();
        state.solo = true;
        self.release(state, u64::MAX)
    }

    /// Takes the outputs of exits through `through` off the queue, and
    /// writes them with the state let go.
    fn release(&self, mut state: MutexGuard<'_, GateState>, through: u64) -> Result<(), SinkError> {
        let due = state
            .held
            .iter()
            .position(|held| held.exit > through)
            .unwrap_or(state.held.len());
        if due == 0 {
            return Ok(());
        }
        let batch: Vec<HeldOutput> = state.held.drain(..due).collect();
        if state.held.is_empty() {
            self.last_held.store(NONE_HELD, Ordering::Release);
        }
        state.emitting += 1;
        let mut emitter = self.emitter();
        drop(state);
        let written = self.write_batch(&mut emitter, batch);
        drop(emitter);
        self.state().emitting -= 1;
        self.released.notify_all();
        written
    }

    fn write_batch(
        &self,
        emitter: &mut Emitter<W>,
        batch: Vec<HeldOutput>,
    ) -> Result<(), SinkError> {
        for held in batch {
            self.stats.held_outputs.dec();
            self.stats
                .output_hold_seconds
                .observe(held.since.elapsed().as_secs_f64());
            self.emit(emitter, held.output)?;
        }
        emitter.out.flush().map_err(SinkError::Console)
    }

    /// The latest exit with output still held, if any.
    pub fn last_held_exit(&self) -> Option<u64> {
        match self.last_held.load(Ordering::Acquire) {
            NONE_HELD => None,
            exit => Some(exit),
        }
    }

    /// How much output has been released.
    pub fn released(&self) -> Released {
        Released {
            console: self.released_bytes.load(Ordering::SeqCst),
            frames: self.released_frames.load(Ordering::SeqCst),
        }
    }

    /// Waits until nothing is held or being written, or `timeout` passes;
    /// true when all is out.
    pub fn drain(&self, timeout: Duration) -> bool {
        let state = self.state();
        let (state, _) = self
            .released
            .wait_timeout_while(state, timeout, |state| {
                !state.held.is_empty() || state.emitting > 0
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.held.is_empty() && state.emitting == 0
    }

    /// Flushes the console.
    pub fn flush(&self) -> io::Result<()> {
        self.emitter().out.flush()
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
        String::from_utf8(gate.emitter().out.clone()).unwrap()
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

    #[test]
    fn hold_times_feed_the_histogram_and_held_outputs_are_counted() {
        let gate = always_leased();
        for exit in [1, 2, 3] {
            gate.hold(exit, text(b"x")).unwrap();
        }
        assert_eq!(gate.stats.held_outputs.get(), 3);
        assert_eq!(gate.last_held_exit(), Some(3));
        gate.ack(2).unwrap();
        assert_eq!(gate.stats.held_outputs.get(), 1);
        assert_eq!(gate.stats.output_hold_seconds.get_sample_count(), 2);
        assert_eq!(gate.last_held_exit(), Some(3));
        gate.ack(3).unwrap();
        assert_eq!(gate.last_held_exit(), None);
        assert_eq!(gate.stats.held_outputs.get(), 0);
    }

    /// Blocks every write until the test lets it go.
    #[derive(Debug)]
    struct Stuck {
        written: Vec<u8>,
        go: crossbeam_channel::Receiver<()>,
        writing: crossbeam_channel::Sender<()>,
    }

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.writing.send(());
            let _ = self.go.recv();
            self.written.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_release_being_written_holds_up_neither_holding_nor_the_vcpus_reads() {
        let (go_tx, go) = crossbeam_channel::unbounded();
        let (writing, being_written) = crossbeam_channel::unbounded();
        let stuck = Stuck {
            written: Vec::new(),
            go,
            writing,
        };
        let gate = OutputGate::new(stuck, HostDevices::default(), false, Box::new(|| true));
        gate.hold(1, text(b"a")).unwrap();
        let releaser = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.ack(1))
        };
        being_written.recv().unwrap();
        // The release is stuck in its write: the vCPU thread goes on.
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.hold(2, text(b"b")).unwrap();
                let _ = done_tx.send((gate.last_held_exit(), gate.released()));
            })
        };
        let (last_held, released) = done
            .recv_timeout(Duration::from_secs(5))
            .expect("holding waited for a write");
        assert_eq!(last_held, Some(2));
        assert_eq!(released.console, 0, "the write has not finished");
        assert!(
            !gate.drain(Duration::from_millis(10)),
            "a batch is in flight"
        );
        go_tx.send(()).unwrap();
        releaser.join().unwrap().unwrap();
        holder.join().unwrap();
        go_tx.send(()).unwrap();
        gate.ack(2).unwrap();
        assert!(gate.drain(Duration::from_secs(1)));
        assert_eq!(gate.emitter().out.written, b"ab");
    }
}
