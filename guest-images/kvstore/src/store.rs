//! The store with its log, clock and memory: running requests, committing
//! their log entries, and the work between requests (active expiry,
//! compaction).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use kvcore::journal::Journal;
use kvcore::{Connection, Host, Kv, Memory, Outcome, Refusal, Request, Status};

use crate::clock::{self, Clock};
use crate::disk::BlockDisk;

/// Heap kept from the store's data (Redis's `maxmemory` is the heap less
/// this): requests and replies in flight, the log's staged records and a
/// compaction's chunk.
const RESERVE: usize = 16 << 20;
/// Heap that no one argument or reply may take: what the small allocations
/// between the checks need.
const SAFETY: usize = 4 << 20;
/// After the disk failed, how long before a write tries it again.
const RETRY_TICKS: u64 = 20;

/// The most heap in use [`memory`] has seen.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The guest's memory, from the heap's counts.
pub fn memory() -> Memory {
    let (used, size) = virtio::heap::usage();
    let peak = PEAK.fetch_max(used, Ordering::Relaxed).max(used);
    Memory {
        used,
        peak,
        limit: size.saturating_sub(RESERVE),
        room: size.saturating_sub(used).saturating_sub(SAFETY),
    }
}

/// When a failed disk may be tried again.
#[derive(Default)]
struct Retry {
    at_tick: u64,
}

impl Retry {
    /// Whether the disk failed and may not be tried again yet.
    fn waiting(&self, journal: &Journal<BlockDisk>) -> bool {
        journal.failed() && clock::ticks() < self.at_tick
    }

    /// After the disk was tried: if it failed, the next try waits.
    fn tried(&mut self, journal: &Journal<BlockDisk>) {
        if journal.failed() {
            self.at_tick = clock::ticks() + RETRY_TICKS;
        }
    }
}

/// Keys deleted per round by active expiry.
const EXPIRE_PER_ROUND: usize = 32;

pub struct Store {
    pub kv: Kv,
    pub journal: Journal<BlockDisk>,
    pub clock: Clock,
    retry: Retry,
}

impl Store {
    pub fn new(kv: Kv, journal: Journal<BlockDisk>, clock: Clock) -> Self {
        Self {
            kv,
            journal,
            clock,
            retry: Retry::default(),
        }
    }

    /// Runs a request from `connection`, first making room in the log for
    /// what it may write: its outcome, and whether it logged an entry.
    pub fn run(
        &mut self,
        connection: &mut Connection,
        request: Request,
        clients: usize,
    ) -> (Outcome, bool) {
        let bound = connection.log_bound(&request);
        let Self {
            kv, journal, clock, ..
        } = self;
        journal.make_room(bound, kv, &mut || clock.now_ms());
        let changes = self.journal.status().changes;
        let (kv, mut env) = self.split(clients);
        let outcome = connection.run(request, kv, &mut env);
        let logged = self.journal.status().changes != changes;
        (outcome, logged)
    }

    /// The store, and the host it runs commands with.
    fn split(&mut self, clients: usize) -> (&mut Kv, Env<'_>) {
        let env = Env {
            journal: &mut self.journal,
            clock: &mut self.clock,
            retry: &mut self.retry,
            clients,
        };
        (&mut self.kv, env)
    }

    /// Makes the round's log entries durable: whether they are (or there
    /// were none). A disk that failed is tried again at most once a second.
    pub fn commit(&mut self) -> bool {
        if !self.journal.has_staged() {
            return !self.journal.failed();
        }
        if self.retry.waiting(&self.journal) {
            return false;
        }
        let committed = self.journal.commit();
        self.retry.tried(&self.journal);
        committed
    }

    /// Between rounds: deletes keys past their deadline, and starts or
    /// continues a compaction (one step). Whether work remains.
    pub fn maintain(&mut self, clients: usize) -> bool {
        let estimate = self.clock.estimate_ms();
        let (kv, mut env) = self.split(clients);
        kv.expire_due(&mut env, estimate, EXPIRE_PER_ROUND);
        // Deletions are committed before compaction, which needs nothing
        // staged.
        if self.journal.has_staged() && !self.commit() {
            return false;
        }
        if self.journal.should_compact() {
            let now = self.clock.now_ms();
            self.journal.start_compaction(&mut self.kv, now);
        }
        if self.journal.compacting() {
            self.journal.compact_step(&mut self.kv);
        }
        self.journal.compacting()
    }
}

struct Env<'a> {
    journal: &'a mut Journal<BlockDisk>,
    clock: &'a mut Clock,
    retry: &'a mut Retry,
    clients: usize,
}

impl Host for Env<'_> {
    fn now_ms(&mut self) -> u64 {
        self.clock.now_ms()
    }

    fn memory(&self) -> Memory {
        memory()
    }

    fn reserve(&mut self, bytes: usize) -> Result<(), Refusal> {
        if memory().room < bytes {
            return Err(Refusal::OutOfMemory);
        }
        if self.retry.waiting(self.journal) {
            return Err(Refusal::DiskFailed);
        }
        let result = self.journal.reserve(bytes);
        self.retry.tried(self.journal);
        result
    }

    fn log(&mut self, entry: Vec<u8>) {
        self.journal.stage(&entry);
    }

    fn status(&self) -> Status {
        let journal = self.journal.status();
        Status {
            uptime_ms: self
                .clock
                .estimate_ms()
                .saturating_sub(self.clock.boot_ms()),
            connected_clients: self.clients,
            heap_size: virtio::heap::usage().1,
            log_size: journal.size,
            log_base_size: journal.base_size,
            compacting: journal.compacting,
            compactions: journal.compactions,
            last_write_ok: journal.write_ok,
            changes_since_compaction: journal.changes,
            last_compaction_unix: journal.last_compaction_unix,
        }
    }
}
