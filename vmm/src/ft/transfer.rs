//! The live side's half of a live transfer (pre-copy, as QEMU and VMware
//! migrate a running VM): memory goes to the standby in rounds while the
//! guest runs, each round the pages dirtied since the last one (KVM's dirty
//! log for the guest's writes, guest RAM's own bitmap for the VMM's), until
//! what is left fits the pause target or after [`MAX_ROUNDS`]. Then, at an
//! exit boundary, the vCPU thread pauses, sends the last dirty pages and the
//! machine's state, pairs with the standby from that exit on, and resumes
//! at once: the output rule holds the guest's outputs until the standby
//! acknowledges the log, which it does only once it holds the whole state.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ft_logging::channel::{DiskSample, Lease, LogSender};
use vm_state::{DirtyPages, FtState};

use super::output_gate::OutputGate;
use super::primary::PairStatus;
use crate::host::Leased;
use crate::host::PauseSignal;
use crate::machine::Machine;
use crate::vstate::MemoryTracker;

/// The most rounds of pages a transfer sends before it pauses the guest
/// for the rest.
pub const MAX_ROUNDS: u32 = 30;
/// How long the guest may stay paused at the cutover, as estimated from how
/// fast this host reads pages: once what is left fits, the guest pauses.
const PAUSE_TARGET: Duration = Duration::from_millis(10);
/// What is left never exceeds this, whatever the estimate says.
const MAX_FINAL_PAGES: u64 = 4096;
/// Pages per message: 16 MiB of data at most.
const PAGES_PER_PART: usize = 4096;
/// Bytes queued for the link's writer before the transfer waits for it.
const QUEUE_LIMIT: u64 = 32 << 20;
/// How often a waiting transfer looks at the link and the queue.
const POLL: Duration = Duration::from_millis(2);

/// What the protector asks the vCPU thread to do at the cutover.
#[derive(Debug)]
pub struct CutoverRequest {
    pub sender: LogSender,
    /// The new pair's lease, and how long an acknowledgement keeps it.
    pub lease: Lease,
    pub lease_span: Duration,
    pub tracker: MemoryTracker,
    /// Pages dirtied that no round has sent.
    pub carried: DirtyPages,
    /// The disk's sectors to sample for the disk check (none: no disk).
    pub samples: Vec<u64>,
    pub done: Sender<Result<Cutover, String>>,
}

impl CutoverRequest {
    fn leased(&self) -> Leased {
        let (lease, span) = (self.lease.clone(), self.lease_span);
        Arc::new(move || lease.holds(span))
    }
}

/// A cutover done: the new pair, from exit `exit` on.
#[derive(Debug)]
pub struct Cutover {
    pub exit: u64,
    pub status: Arc<PairStatus>,
    /// How long the guest was paused.
    pub pause: Duration,
    /// Bytes sent during the pause: the last pages and the state.
    pub bytes: u64,
    /// Pages sent during the pause.
    pub pages: u64,
    /// The disk's sampled sectors, once the writes before the cutover are
    /// done.
    pub samples: Option<Receiver<Vec<DiskSample>>>,
}

/// Where the protector leaves a cutover request for the vCPU thread.
#[derive(Debug)]
pub struct Cutovers {
    request: Mutex<Option<CutoverRequest>>,
    pause: PauseSignal,
}

impl Cutovers {
    /// Cutovers that pause the vCPU with `pause`.
    pub fn new(pause: PauseSignal) -> Arc<Self> {
        Arc::new(Self {
            request: Mutex::new(None),
            pause,
        })
    }

    /// The signal the vCPU thread's run pauses on.
    pub fn pause(&self) -> &PauseSignal {
        &self.pause
    }

    /// Asks for a cutover at the guest's next exit boundary.
    pub(super) fn ask(&self, request: CutoverRequest) {
        *self.lock() = Some(request);
        self.pause.request();
    }

    /// Kicks the vCPU again while the request waits.
    pub(super) fn remind(&self) {
        if self.lock().is_some() {
            self.pause.request();
        }
    }

    /// Takes the request back if the vCPU thread has not taken it; true if
    /// it was still waiting.
    pub(super) fn withdraw(&self) -> bool {
        let withdrawn = self.lock().take().is_some();
        if withdrawn {
            self.pause.clear();
        }
        withdrawn
    }

    /// The vCPU thread, paused, takes the request, if any is left.
    pub(super) fn take(&self) -> Option<CutoverRequest> {
        let mut request = self.lock();
        self.pause.clear();
        request.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CutoverRequest>> {
        self.request.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the rounds sent, and what is left for the pause.
#[derive(Debug)]
pub struct PreCopy {
    pub rounds: u32,
    pub bytes: u64,
    pub carried: DirtyPages,
}

/// Sends the guest's memory in rounds while it runs, until what is left
/// fits the pause. `abort` says why to stop early (the standby is lost, the
/// guest ended), if it should.
pub fn pre_copy(
    tracker: &MemoryTracker,
    sender: &LogSender,
    abort: &dyn Fn() -> Option<String>,
) -> Result<PreCopy, String> {
    tracker
        .start()
        .map_err(|error| format!("cannot track dirty pages: {error}"))?;
    let mut rate = CaptureRate::default();
    let mut bytes = send_pages(tracker, sender, &tracker.pages(), &mut rate, abort)?;
    let mut rounds = 1;
    loop {
        drained(sender, 0, abort)?;
        let dirty = tracker
            .dirty_pages()
            .map_err(|error| format!("cannot read the dirty log: {error}"))?;
        let left = dirty.count();
        let fits = left <= MAX_FINAL_PAGES && rate.estimate(left) <= PAUSE_TARGET;
        if fits || rounds >= MAX_ROUNDS {
            tracing::debug!(rounds, left, "pre-copy done");
            return Ok(PreCopy {
                rounds,
                bytes,
                carried: dirty,
            });
        }
        let pages: Vec<u64> = dirty.iter().collect();
        bytes += send_pages(tracker, sender, &pages, &mut rate, abort)?;
        rounds += 1;
    }
}

/// How fast this host reads pages out of guest memory.
#[derive(Debug, Default)]
struct CaptureRate {
    pages: u64,
    took: Duration,
}

impl CaptureRate {
    fn estimate(&self, pages: u64) -> Duration {
        if self.pages == 0 {
            return Duration::MAX;
        }
        self.took.mul_f64(pages as f64 / self.pages as f64)
    }
}

/// Sends `pages` in parts; returns the bytes sent.
fn send_pages(
    tracker: &MemoryTracker,
    sender: &LogSender,
    pages: &[u64],
    rate: &mut CaptureRate,
    abort: &dyn Fn() -> Option<String>,
) -> Result<u64, String> {
    let mut bytes = 0;
    for part in pages.chunks(PAGES_PER_PART) {
        drained(sender, QUEUE_LIMIT, abort)?;
        let started = Instant::now();
        let set = tracker
            .capture(&to_dirty(part))
            .map_err(|error| format!("cannot read guest memory: {error}"))?;
        let encoded = set.encode();
        rate.took += started.elapsed();
        rate.pages += part.len() as u64;
        bytes += encoded.len() as u64;
        sender.pages(encoded);
    }
    Ok(bytes)
}

fn to_dirty(pages: &[u64]) -> DirtyPages {
    let mut set = DirtyPages::default();
    pages.iter().for_each(|&page| set.insert(page));
    set
}

/// Waits until at most `limit` bytes wait for the link's writer.
fn drained(
    sender: &LogSender,
    limit: u64,
    abort: &dyn Fn() -> Option<String>,
) -> Result<(), String> {
    while sender.queued_bytes() > limit {
        if let Some(reason) = abort() {
            return Err(reason);
        }
        thread::sleep(POLL);
    }
    match abort() {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// The last of the VM, sent while the guest is paused at an exit boundary.
pub(super) struct FinalPart {
    pub exit: u64,
    /// Virtual time at the cutover.
    pub now_ns: u64,
    pub bytes: u64,
    pub pages: u64,
    pub samples: Option<Receiver<Vec<DiskSample>>>,
    pub leased: Leased,
}

/// Sends the pages dirtied since the last round and the machine's state,
/// with the FT bookkeeping the standby needs: released output and the disk
/// requests in flight; and asks the disk thread for its samples.
pub(super) fn final_part<W: Write>(
    machine: &Machine,
    request: &CutoverRequest,
    gate: &OutputGate<W>,
) -> Result<FinalPart, String> {
    let mut dirty = request
        .tracker
        .dirty_pages()
        .map_err(|error| format!("cannot read the dirty log: {error}"))?;
    let carried: Vec<u64> = request.carried.iter().collect();
    carried.iter().for_each(|&page| dirty.insert(page));
    let pages: Vec<u64> = dirty.iter().collect();
    let mut bytes = 0;
    for part in pages.chunks(PAGES_PER_PART) {
        let set = request
            .tracker
            .capture(&to_dirty(part))
            .map_err(|error| format!("cannot read guest memory: {error}"))?;
        let encoded = set.encode();
        bytes += encoded.len() as u64;
        request.sender.pages(encoded);
    }
    let mut state = machine
        .capture()
        .map_err(|error| format!("cannot capture the vCPU: {error}"))?;
    let released = gate.released();
    let in_flight = state.core.platform().disk_requests_in_flight();
    state.ft = FtState {
        released_console: released.console,
        released_frames: released.frames,
        disk_in_flight: gate.in_flight(&in_flight),
    };
    if state.ft.disk_in_flight.len() != in_flight.len() {
        tracing::warn!(
            guest = in_flight.len(),
            host = state.ft.disk_in_flight.len(),
            "disk requests in flight the host does not know"
        );
    }
    let encoded = state.encode();
    bytes += encoded.len() as u64;
    request.sender.state(encoded);
    let samples = (!request.samples.is_empty())
        .then(|| {
            gate.with_devices(|devices| {
                Some(devices.disk.as_ref()?.sample(request.samples.clone()))
            })
        })
        .flatten();
    Ok(FinalPart {
        exit: state.exit(),
        now_ns: state.core.platform().virtual_time_ns(),
        bytes,
        pages: pages.len() as u64,
        samples,
        leased: request.leased(),
    })
}
