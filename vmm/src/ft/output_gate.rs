//! The output rule (docs/DESIGN.md §4): the primary releases an output (console
//! bytes, a disk write or flush) only once the backup has acknowledged the
//! log through the exit that produced it.
//! The guest keeps running meanwhile; only the output waits. And it is
//! released only while the primary holds its lease, so that a primary that
//! was paused or cut off cannot release output once its backup may be live.
//!
//! A live side goes from one pair to the next: alone (outputs go out at
//! once), paired from a cutover exit on (held), alone again when the backup
//! is lost and the flag won. The gate also keeps the disk requests in
//! flight, which a live transfer hands to the new backup.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ft_logging::channel::Released;
use ft_logging::{DiskRequest, OutputSink, SinkError};

use crate::host::{HostDevices, Leased, OutputLease};
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
/// reads at every exit (the release counts) are atomics.
pub struct OutputGate<W> {
    state: Mutex<GateState>,
    /// Signalled when held outputs have been released.
    released: Condvar,
    emitter: Mutex<Emitter<W>>,
    /// Console bytes and frames released so far; the backup learns them
    /// with every batch and heartbeat, and re-emits only what comes after
    /// them on takeover.
    released_bytes: AtomicU64,
    released_frames: AtomicU64,
    stats: Arc<Stats>,
    /// Disk requests submitted whose completion the guest has not had.
    in_flight: Mutex<BTreeMap<u64, DiskRequest>>,
    /// Set only with the state locked, so that it agrees with the queue.
    /// Kept out of the emitter's lock, so that pairing never waits for a
    /// release being written.
    lease: OutputLease,
}

impl<W: std::fmt::Debug> std::fmt::Debug for OutputGate<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputGate")
            .field("state", &self.state)
            .field("lease", &self.lease)
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
    /// `devices`; alone until [`pair`](Self::pair).
    pub fn new(out: W, devices: HostDevices) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                held: VecDeque::new(),
                acked: 0,
                emitting: 0,
            }),
            released: Condvar::new(),
            stats: devices.stats.clone(),
            lease: devices.lease.clone(),
            emitter: Mutex::new(Emitter { out, devices }),
            released_bytes: AtomicU64::new(0),
            released_frames: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
        })
    }

    /// A backup has the log through exit `exit` (everything up to it was
    /// released): outputs of later exits wait for its acknowledgement, and
    /// go out only while `leased` says the lease holds.
    pub fn pair(&self, exit: u64, leased: Leased) {
        let mut state = self.state();
        state.acked = exit;
        self.lease.set(Some(leased));
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
        let at_once = !self.lease.paired()
            || (exit <= state.acked
                && state.held.is_empty()
                && state.emitting == 0
                && self.lease.holds());
        if at_once {
            let mut emitter = self.emitter();
            drop(state);
            let mut written = Released::default();
            self.emit(&mut emitter, output, &mut written)?;
            return self.flushed(&mut emitter, written);
        }
        state.held.push_back(HeldOutput {
            exit,
            output,
            since: Instant::now(),
        });
        self.stats.held_outputs.inc();
        Ok(())
    }

    /// A disk read is no output: it goes to the disk at once. Virtio-blk
    /// does not order requests in flight, so it may pass a held write.
    pub fn read(&self, request: DiskRequest) -> Result<(), SinkError> {
        self.emitter().devices.disk(request)
    }

    /// A disk request the guest made, in flight until
    /// [`completed`](Self::completed).
    fn submitted(&self, request: &DiskRequest) {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(request.id, request.clone());
    }

    /// The guest has the completion of disk request `id`.
    pub fn completed(&self, id: u64) {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id);
    }

    /// The requests among `ids` still in flight (all of them, when the
    /// guest's and the host's bookkeeping agree).
    pub fn in_flight(&self, ids: &[u64]) -> Vec<DiskRequest> {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ids.iter()
            .filter_map(|id| in_flight.get(id).cloned())
            .collect()
    }

    /// The host devices, for what is not an output (a disk check).
    pub fn with_devices<T>(&self, f: impl FnOnce(&HostDevices) -> T) -> T {
        f(&self.emitter().devices)
    }

    /// Writes `output`, counting what it wrote in `written`.
    fn emit(
        &self,
        emitter: &mut Emitter<W>,
        output: Held,
        written: &mut Released,
    ) -> Result<(), SinkError> {
        match output {
            Held::Console(bytes) => {
                emitter.out.write_all(&bytes).map_err(SinkError::Console)?;
                written.console += bytes.len() as u64;
                Ok(())
            }
            Held::Disk(request) => emitter.devices.disk(request),
            Held::Frame(frame) => {
                emitter.devices.send(&frame)?;
                written.frames += 1;
                Ok(())
            }
        }
    }

    /// Flushes what was written, and only then counts it as released: the
    /// counts tell a backup what it need not emit again, so a byte still in
    /// a buffer (lost if this process dies now) must not be in them.
    fn flushed(&self, emitter: &mut Emitter<W>, written: Released) -> Result<(), SinkError> {
        emitter.out.flush().map_err(SinkError::Console)?;
        self.released_bytes
            .fetch_add(written.console, Ordering::SeqCst);
        self.released_frames
            .fetch_add(written.frames, Ordering::SeqCst);
        Ok(())
    }

    /// The backup acknowledged the log through `exit`: release what it
    /// covers, if the lease holds (a later acknowledgement renews it).
    pub fn ack(&self, exit: u64) -> Result<(), SinkError> {
        let mut state = self.state();
        state.acked = state.acked.max(exit);
        if !self.lease.holds() {
            return Ok(());
        }
        let acked = state.acked;
        self.release(state, acked)
    }

    /// The backup is gone and this side won the go-live flag: release
    /// everything, and from now on outputs go out at once.
    pub fn go_solo(&self) -> Result<(), SinkError> {
        let state = self.state();
        self.lease.set(None);
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
        let mut written = Released::default();
        for held in batch {
            self.stats.held_outputs.dec();
            self.stats
                .output_hold_seconds
                .observe(held.since.elapsed().as_secs_f64());
            self.emit(emitter, held.output, &mut written)?;
        }
        self.flushed(emitter, written)
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
        self.0.submitted(&request);
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
        let gate = OutputGate::new(Vec::new(), HostDevices::default());
        gate.pair(0, Arc::new(|| true));
        gate
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
        let gate = OutputGate::new(Vec::new(), HostDevices::default());
        gate.pair(0, Arc::new(move || leased.load(Ordering::SeqCst)));
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
        let gate = OutputGate::new(Vec::new(), HostDevices::default());
        gate.pair(0, Arc::new(|| false));
        gate.hold(1, text(b"held ")).unwrap();
        assert!(!gate.drain(Duration::from_millis(10)));
        gate.go_solo().unwrap();
        assert!(gate.drain(Duration::from_millis(10)));
        gate.hold(2, text(b"now")).unwrap();
        assert_eq!(written(&gate), "held now");
    }

    #[test]
    fn a_new_pair_holds_only_what_comes_after_its_cutover() {
        let gate = OutputGate::new(Vec::new(), HostDevices::default());
        gate.hold(3, text(b"alone ")).unwrap();
        gate.pair(5, Arc::new(|| true));
        gate.hold(5, text(b"at the cutover ")).unwrap();
        gate.hold(6, text(b"paired")).unwrap();
        assert_eq!(written(&gate), "alone at the cutover ");
        gate.ack(6).unwrap();
        assert_eq!(written(&gate), "alone at the cutover paired");
        assert_eq!(gate.released().console, 27);
    }

    #[test]
    fn disk_requests_are_in_flight_until_completed() {
        use ft_logging::DiskOp;
        let gate = OutputGate::new(Vec::new(), HostDevices::default());
        let mut sink = GatedSink(gate.clone());
        let write = DiskRequest {
            id: 4,
            op: DiskOp::Write {
                sector: 2,
                data: vec![7; 512],
            },
        };
        let read = DiskRequest {
            id: 5,
            op: DiskOp::Read {
                sector: 0,
                len: 512,
            },
        };
        sink.disk(1, write.clone()).unwrap();
        sink.disk(2, read.clone()).unwrap();
        assert_eq!(gate.in_flight(&[4, 5]), vec![write.clone(), read]);
        gate.completed(5);
        assert_eq!(gate.in_flight(&[4, 5]), vec![write]);
    }

    /// Holds what is written until it is flushed, as stdout's buffer does.
    #[derive(Debug, Default)]
    struct Buffered {
        pending: Vec<u8>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Buffered {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.pending.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            let pending = std::mem::take(&mut self.pending);
            self.out.lock().unwrap().extend(pending);
            Ok(())
        }
    }

    #[test]
    fn only_what_left_the_buffer_counts_as_released() {
        let buffered = Buffered::default();
        let out = buffered.out.clone();
        let gate = OutputGate::new(buffered, HostDevices::default());
        gate.pair(0, Arc::new(|| true));
        // Already acknowledged: out at once, with no newline to push it.
        gate.ack(5).unwrap();
        gate.hold(5, text(b"t")).unwrap();
        assert_eq!(gate.released().console, out.lock().unwrap().len() as u64);
        gate.hold(6, text(b"ick")).unwrap();
        gate.ack(6).unwrap();
        assert_eq!(gate.released().console, 4);
        assert_eq!(*out.lock().unwrap(), b"tick");
    }

    #[test]
    fn hold_times_feed_the_histogram_and_held_outputs_are_counted() {
        let gate = always_leased();
        for exit in [1, 2, 3] {
            gate.hold(exit, text(b"x")).unwrap();
        }
        assert_eq!(gate.stats.held_outputs.get(), 3);
        gate.ack(2).unwrap();
        assert_eq!(gate.stats.held_outputs.get(), 1);
        assert_eq!(gate.stats.output_hold_seconds.get_sample_count(), 2);
        gate.ack(3).unwrap();
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
        let gate = OutputGate::new(stuck, HostDevices::default());
        gate.pair(0, Arc::new(|| true));
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
                let _ = done_tx.send((gate.stats.held_outputs.get(), gate.released()));
            })
        };
        let (held, released) = done
            .recv_timeout(Duration::from_secs(5))
            .expect("holding waited for a write");
        assert_eq!(held, 1, "the second output is held");
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
