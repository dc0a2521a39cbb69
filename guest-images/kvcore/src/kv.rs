//! The store and the running of requests: command lookup, arity, MULTI
//! queues, write-ahead logging and memory checks around each command.

use alloc::vec::Vec;

use crate::commands::{self, Command};
use crate::db::{Clock, Db};
use crate::log;
use crate::reply::{self, Protocol, Reply};

/// What the store needs from its host (`kvstore`, or a replay of the log).
pub trait Host {
    /// The time in Unix milliseconds. Reading it may cost a VM exit, so it
    /// is read only when a command needs it.
    fn now_ms(&mut self) -> u64;
    fn memory(&self) -> Memory;
    /// Before a write command runs: whether a log entry of at most `bytes`
    /// can be made durable. The store does not change when it cannot.
    fn reserve(&mut self, bytes: usize) -> Result<(), Refusal>;
    /// A write command changed the store: its entry, to append to the log
    /// (which is flushed before the command's reply is sent).
    fn log(&mut self, entry: Vec<u8>);
    /// What INFO and CLIENT report about the host.
    fn status(&self) -> Status;
}

/// The guest's memory, as the store's limits see it.
#[derive(Clone, Copy, Default)]
pub struct Memory {
    /// Heap bytes in use.
    pub used: usize,
    /// The most heap bytes in use the store's checks have seen (Redis's
    /// `used_memory_peak`): over `limit` once a command was refused for
    /// memory, even after the refused request's own memory is freed.
    pub peak: usize,
    /// Past this, commands that add data are refused with Redis's OOM error
    /// (Redis's `maxmemory`).
    pub limit: usize,
    /// The most one request may allocate at once: an argument, a reply.
    pub room: usize,
}

impl Memory {
    /// No limits: for a replay of the log, which must take what was logged.
    pub const UNLIMITED: Self = Self {
        used: 0,
        peak: 0,
        limit: usize::MAX,
        room: usize::MAX,
    };
}

/// Why a write command is refused before it runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// Its entry does not fit on the disk, even after compaction.
    DiskFull,
    /// The disk failed to take earlier entries, and still does.
    DiskFailed,
    /// There is no memory left to log it.
    OutOfMemory,
}

impl Refusal {
    fn message(self) -> &'static [u8] {
        match self {
            Self::DiskFull => b"ERR disk full",
            Self::DiskFailed => b"ERR disk write failed",
            Self::OutOfMemory => reply::OOM,
        }
    }
}

/// The host's state for INFO.
#[derive(Clone, Copy, Default)]
pub struct Status {
    pub uptime_ms: u64,
    pub connected_clients: usize,
    pub heap_size: usize,
    /// The log's bytes, in its current region.
    pub log_size: u64,
    /// The log's bytes after the last compaction (or at boot).
    pub log_base_size: u64,
    pub compacting: bool,
    pub compactions: u64,
    pub last_write_ok: bool,
    /// Changes since the last compaction.
    pub changes_since_compaction: u64,
    /// Unix seconds of the last compaction (or of boot).
    pub last_compaction_unix: u64,
}

/// One client's state.
#[derive(Default)]
pub struct Session {
    pub(crate) proto: Protocol,
    pub(crate) id: u64,
    pub(crate) name: Option<Vec<u8>>,
    pub(crate) lib_name: Option<Vec<u8>>,
    pub(crate) lib_version: Option<Vec<u8>>,
    pub(crate) multi: Option<Multi>,
}

/// A transaction being queued.
#[derive(Default)]
pub(crate) struct Multi {
    pub(crate) queued: Vec<Vec<Vec<u8>>>,
    pub(crate) bytes: usize,
    /// A command was refused while queueing: EXEC aborts.
    pub(crate) failed: bool,
}

/// The most a transaction may queue, in request bytes: its log entry is
/// one record and must fit in memory at once.
pub const MAX_TRANSACTION: usize = 4 << 20;

impl Session {
    pub fn new(id: u64) -> Self {
        Self {
            id,
            ..Self::default()
        }
    }
}

/// Counters for INFO.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) commands: u64,
    pub(crate) connections: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) expired: u64,
}

/// The store: the keyspace and its counters.
#[derive(Default)]
pub struct Kv {
    pub(crate) db: Db,
    pub(crate) stats: Stats,
}

/// What the server does for one request.
pub struct Outcome {
    /// The reply, in the session's protocol. If the request logged an
    /// entry, send it only once the log is flushed.
    pub reply: Vec<u8>,
    /// Close the connection once `reply` is sent (QUIT).
    pub close: bool,
}

/// The clock a command reads, remembering the time it used (the log
/// entry records it, so a replay uses the same).
pub(crate) struct Now<'a> {
    pub(crate) host: &'a mut dyn Host,
    used: Option<u64>,
}

impl Clock for Now<'_> {
    fn now_ms(&mut self) -> u64 {
        *self.used.get_or_insert_with(|| self.host.now_ms())
    }
}

/// What a command runs with.
pub(crate) struct Ctx<'a> {
    pub(crate) db: &'a mut Db,
    pub(crate) stats: &'a mut Stats,
    pub(crate) session: &'a mut Session,
    pub(crate) clock: Now<'a>,
    pub(crate) reply: Reply,
}

impl Kv {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of keys (some perhaps expired but not yet deleted).
    pub fn len(&self) -> usize {
        self.db.len()
    }

    pub fn is_empty(&self) -> bool {
        self.db.is_empty()
    }

    /// A client connected: counted for INFO.
    pub fn connected(&mut self) {
        self.stats.connections += 1;
    }

    /// Deletes up to `max` keys whose deadline passed, as Redis's active
    /// expiry does, and logs the deletion (a DEL at that time); nothing if
    /// the log has no room. Reads the host's clock if some key is due by
    /// `estimate` (a cheap guess of the time).
    pub fn expire_due(&mut self, host: &mut dyn Host, estimate: u64, max: usize) {
        if self
            .db
            .next_deadline()
            .is_none_or(|deadline| deadline > estimate)
        {
            return;
        }
        let now = host.now_ms();
        let keys = self.db.due(now, max);
        if keys.is_empty() {
            return;
        }
        let mut args = Vec::with_capacity(keys.len() + 1);
        args.push(b"DEL".to_vec());
        args.extend(keys);
        let mut entry = log::encode_entry(&[&args]);
        log::set_entry_time(&mut entry, now);
        if host.reserve(entry.len()).is_err() {
            return;
        }
        for key in &args[1..] {
            self.db.remove(key);
        }
        self.stats.expired += (args.len() - 1) as u64;
        host.log(entry);
    }

    /// The earliest deadline of any key.
    #[cfg(test)]
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.db.next_deadline()
    }

    /// Runs one request from `session`.
    pub fn execute(
        &mut self,
        session: &mut Session,
        mut args: Vec<Vec<u8>>,
        host: &mut dyn Host,
    ) -> Outcome {
        self.stats.commands += 1;
        let memory = host.memory();
        let reply = Reply::new(session.proto, memory.room);
        let mut ctx = Ctx {
            db: &mut self.db,
            stats: &mut self.stats,
            session,
            clock: Now { host, used: None },
            reply,
        };
        let close = match commands::lookup(&args) {
            Err(error) => {
                if let Some(multi) = &mut ctx.session.multi {
                    multi.failed = true;
                }
                ctx.reply.error(&error);
                false
            }
            Ok(command) if ctx.session.multi.is_some() && !command.runs_in_multi() => {
                queue(&mut ctx, args);
                false
            }
            Ok(command) => {
                if command.is_write() {
                    write(&mut ctx, command, &mut args, memory);
                } else {
                    (command.run)(&mut ctx, &mut args);
                }
                command.closes()
            }
        };
        finish(ctx.reply, close)
    }

    /// Replays one log entry (made by [`Host::log`]) at boot. `None` if
    /// the entry does not decode.
    pub fn replay(&mut self, entry: &[u8], now_fallback: u64) -> Option<u64> {
        let (now, requests) = log::decode_entry(entry)?;
        let now = if now == 0 { now_fallback } else { now };
        let mut host = ReplayHost { now };
        let mut session = Session::default();
        for mut args in requests {
            let command = commands::lookup(&args).ok()?;
            let mut ctx = Ctx {
                db: &mut self.db,
                stats: &mut self.stats,
                session: &mut session,
                clock: Now {
                    host: &mut host,
                    used: None,
                },
                reply: Reply::new(Protocol::Resp2, usize::MAX),
            };
            (command.run)(&mut ctx, &mut args);
        }
        Some(now)
    }
}

fn finish(reply: Reply, close: bool) -> Outcome {
    let reply = if reply.overflowed() {
        let mut error = Reply::new(Protocol::Resp2, 0);
        error.error(b"ERR reply too large for the server's memory");
        error.into_bytes()
    } else {
        reply.into_bytes()
    };
    Outcome { reply, close }
}

/// Queues a command inside MULTI.
fn queue(ctx: &mut Ctx, args: Vec<Vec<u8>>) {
    let Some(multi) = &mut ctx.session.multi else {
        return;
    };
    let bytes: usize = args.iter().map(|arg| arg.len() + 16).sum();
    if multi.bytes + bytes > MAX_TRANSACTION {
        multi.failed = true;
        ctx.reply
            .error(b"ERR transaction too large for the server's memory");
        return;
    }
    multi.bytes += bytes;
    multi.queued.push(args);
    ctx.reply.simple(b"QUEUED");
}

/// Runs a write command: refused before it runs if its entry cannot be
/// made durable or memory is over the limit; logged if it changed the
/// store.
fn write(ctx: &mut Ctx, command: &Command, args: &mut [Vec<u8>], memory: Memory) {
    if command.denies_oom() && memory.used > memory.limit {
        ctx.reply.error(reply::OOM);
        return;
    }
    let mut entry = log::encode_entry(&[&*args]);
    if let Err(refusal) = ctx.clock.host.reserve(entry.len()) {
        ctx.reply.error(refusal.message());
        return;
    }
    let dirty = ctx.db.dirty();
    (command.run)(ctx, args);
    commit(ctx, dirty, &mut entry);
}

/// Logs `entry` if the store changed since `dirty`, with the time the
/// commands used.
fn commit(ctx: &mut Ctx, dirty: u64, entry: &mut Vec<u8>) {
    if ctx.db.dirty() != dirty {
        log::set_entry_time(entry, ctx.clock.used.unwrap_or(0));
        ctx.clock.host.log(core::mem::take(entry));
    }
}

/// EXEC: runs the queued commands as one, logged as one entry.
pub(crate) fn exec(ctx: &mut Ctx) {
    let Some(multi) = ctx.session.multi.take() else {
        ctx.reply.error(b"ERR EXEC without MULTI");
        return;
    };
    if multi.failed {
        ctx.reply
            .error(b"EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    let mut queued: Vec<(&Command, Vec<Vec<u8>>)> = Vec::new();
    for args in multi.queued {
        // Each was looked up when queued.
        if let Ok(command) = commands::lookup(&args) {
            queued.push((command, args));
        }
    }
    let writes: Vec<&[Vec<u8>]> = queued
        .iter()
        .filter(|(command, _)| command.is_write())
        .map(|(_, args)| args.as_slice())
        .collect();
    let mut entry = Vec::new();
    if !writes.is_empty() {
        let memory = ctx.clock.host.memory();
        let denies = queued.iter().any(|(command, _)| command.denies_oom());
        if denies && memory.used > memory.limit {
            ctx.reply.error(reply::OOM);
            return;
        }
        entry = log::encode_entry(&writes);
        if let Err(refusal) = ctx.clock.host.reserve(entry.len()) {
            ctx.reply.error(refusal.message());
            return;
        }
    }
    let dirty = ctx.db.dirty();
    ctx.reply.array(queued.len());
    for (command, mut args) in queued {
        (command.run)(ctx, &mut args);
    }
    if !entry.is_empty() {
        commit(ctx, dirty, &mut entry);
    }
}

/// The host of a replay: the recorded time, no limits, nothing to log.
struct ReplayHost {
    now: u64,
}

impl Host for ReplayHost {
    fn now_ms(&mut self) -> u64 {
        self.now
    }

    fn memory(&self) -> Memory {
        Memory::UNLIMITED
    }

    fn reserve(&mut self, _bytes: usize) -> Result<(), Refusal> {
        Ok(())
    }

    fn log(&mut self, _entry: Vec<u8>) {}

    fn status(&self) -> Status {
        Status::default()
    }
}
