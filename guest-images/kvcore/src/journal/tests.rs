//! The journal on a simulated disk that can fail, or crash at any request
//! (dropping or tearing that write, keeping the ones before it).

use alloc::vec::Vec;
use std::string::String;
use std::{format, vec};

use super::*;
use crate::kv::{Host, Memory, Status};
use crate::tests::{XorShift, alive, dump, multibulk};
use crate::{Connection, Kv, Refusal};

struct SimDisk {
    image: Vec<u8>,
    /// Requests so far.
    requests: u64,
    /// The request at which the machine dies: that write reaches the
    /// disk only in its first `torn` sectors, and nothing after it.
    crash_at: Option<u64>,
    torn: usize,
    dead: bool,
    /// Writes and flushes fail while set (a disk error, not a crash).
    failing: bool,
}

impl SimDisk {
    fn new(sectors: usize) -> Self {
        Self::from_image(vec![0; sectors * SECTOR_SIZE])
    }

    fn from_image(image: Vec<u8>) -> Self {
        Self {
            image,
            requests: 0,
            crash_at: None,
            torn: 0,
            dead: false,
            failing: false,
        }
    }

    /// Counts a request; whether it may go ahead.
    fn request(&mut self) -> bool {
        self.requests += 1;
        if self.crash_at == Some(self.requests) {
            self.dead = true;
        }
        !self.dead && !self.failing
    }
}

impl Disk for SimDisk {
    fn capacity(&self) -> u64 {
        (self.image.len() / SECTOR_SIZE) as u64
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let start = sector as usize * SECTOR_SIZE;
        buf.copy_from_slice(&self.image[start..start + buf.len()]);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let start = sector as usize * SECTOR_SIZE;
        if self.request() {
            self.image[start..start + data.len()].copy_from_slice(data);
            return Ok(());
        }
        if self.dead && self.crash_at == Some(self.requests) {
            let kept = (self.torn * SECTOR_SIZE).min(data.len());
            self.image[start..start + kept].copy_from_slice(&data[..kept]);
        }
        Err(DiskError("simulated"))
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if self.request() {
            Ok(())
        } else {
            Err(DiskError("simulated"))
        }
    }
}

/// The store's host, logging through the journal.
struct JournalHost<'a> {
    journal: &'a mut Journal<SimDisk>,
    now: u64,
}

impl Host for JournalHost<'_> {
    fn now_ms(&mut self) -> u64 {
        self.now
    }

    fn memory(&self) -> Memory {
        Memory::UNLIMITED
    }

    fn reserve(&mut self, bytes: usize) -> Result<(), Refusal> {
        self.journal.reserve(bytes)
    }

    fn log(&mut self, entry: Vec<u8>) {
        self.journal.stage(&entry);
    }

    fn status(&self) -> Status {
        Status::default()
    }
}

/// A store on a simulated disk, served as kvstore serves it: each batch
/// of requests is committed at once, compaction runs between batches.
struct Server {
    kv: Kv,
    journal: Journal<SimDisk>,
    client: Connection,
    now: u64,
    compaction_paused: bool,
}

impl Server {
    fn open(disk: SimDisk, now: u64) -> Result<Self, OpenError> {
        let mut kv = Kv::new();
        let journal = Journal::open(disk, &mut kv, now, &mut || true)?;
        Ok(Self {
            kv,
            journal,
            client: Connection::new(1),
            now,
            compaction_paused: false,
        })
    }

    /// Runs `input`'s requests as one batch: their replies, and whether the
    /// batch was committed.
    fn batch(&mut self, input: &[u8]) -> (Vec<String>, bool) {
        let (replies, committed, _) = self.batch_states(input);
        (replies, committed)
    }

    /// Runs and commits `input`'s requests, without a compaction step.
    fn requests(&mut self, input: &[u8]) -> Vec<String> {
        self.compaction_paused = true;
        let (replies, _) = self.batch(input);
        self.compaction_paused = false;
        replies
    }

    /// [`Server::batch`], and the store after each request: a crash may
    /// leave any of them on the disk, since making room commits early.
    fn batch_states(&mut self, input: &[u8]) -> (Vec<String>, bool, Vec<Vec<String>>) {
        self.client.receive(input);
        let mut states = Vec::new();
        let mut replies = Vec::new();
        while let Some(request) = self.client.next_request(usize::MAX) {
            let bound = self.client.log_bound(&request);
            let now = self.now;
            self.journal.make_room(bound, &mut self.kv, &mut || now);
            let mut host = JournalHost {
                journal: &mut self.journal,
                now,
            };
            let outcome = self.client.run(request, &mut self.kv, &mut host);
            replies.push(String::from_utf8_lossy(&outcome.reply).into_owned());
            states.push(dump(&self.kv));
        }
        let committed = self.journal.commit();
        if self.compaction_paused {
            return (replies, committed, states);
        }
        if self.journal.should_compact() {
            self.journal.start_compaction(&mut self.kv, self.now);
        }
        if self.journal.compacting() {
            self.journal.compact_step(&mut self.kv);
        }
        (replies, committed, states)
    }

    fn image(&self) -> Vec<u8> {
        self.journal.disk.image.clone()
    }
}

fn reopen(image: Vec<u8>, now: u64) -> Server {
    Server::open(SimDisk::from_image(image), now).expect("the log opens")
}

#[test]
fn a_blank_disk_gets_a_log_and_others_are_refused() {
    let server = Server::open(SimDisk::new(64), 1).unwrap();
    let image = server.image();
    assert!(Header::decode(&image[..SECTOR_SIZE]).is_some());
    assert!(matches!(
        Server::open(SimDisk::new(63), 1).err(),
        Some(OpenError::TooSmall)
    ));
    // An old-format log (records from sector 0), or anything else.
    let mut foreign = vec![0; 64 * SECTOR_SIZE];
    foreign[0] = 7;
    assert!(matches!(
        Server::open(SimDisk::from_image(foreign), 1).err(),
        Some(OpenError::UnknownFormat)
    ));
    let mut data_only = vec![0; 64 * SECTOR_SIZE];
    data_only[2 * SECTOR_SIZE] = 7;
    assert!(matches!(
        Server::open(SimDisk::from_image(data_only), 1).err(),
        Some(OpenError::UnknownFormat)
    ));
    // A header whose regions do not fit.
    let mut image = image;
    image.truncate(64 * SECTOR_SIZE);
    let header = Header {
        generation: 1,
        region: 0,
        region_sectors: 40,
        seed: 5,
    };
    image[..SECTOR_SIZE].copy_from_slice(&header.encode());
    assert!(matches!(
        Server::open(SimDisk::from_image(image), 1).err(),
        Some(OpenError::Layout)
    ));
}

#[test]
fn writes_survive_a_reopen() {
    let mut server = Server::open(SimDisk::new(256), 1_000).unwrap();
    let (replies, committed) =
        server.batch(b"SET a 1\r\nRPUSH l x y\r\nHSET h f v\r\nZADD z 1.5 m\r\nSADD s q\r\n");
    assert!(committed);
    assert_eq!(replies, ["+OK\r\n", ":2\r\n", ":1\r\n", ":1\r\n", ":1\r\n"]);
    let reopened = reopen(server.image(), 2_000);
    assert_eq!(dump(&reopened.kv), dump(&server.kv));
    assert_eq!(reopened.kv.len(), 5);
}

#[test]
fn overwriting_one_key_compacts_instead_of_filling_the_disk() {
    // 4 MiB, as the test.
    let mut server = Server::open(SimDisk::new(8192), 1_000).unwrap();
    let mut last = Vec::new();
    for i in 0..10_000 {
        let value = format!("{i:0>200}");
        let (replies, committed) = server.batch(&multibulk(&[b"SET", b"k", value.as_bytes()]));
        assert_eq!(replies, ["+OK\r\n"], "SET {i}");
        assert!(committed);
        last = value.into_bytes();
        server.now += 1;
    }
    let status = server.journal.status();
    assert!(status.compactions >= 3, "{}", status.compactions);
    assert!(status.size < 1 << 20, "{}", status.size);
    let mut reopened = reopen(server.image(), server.now);
    let mut expected = format!("${}\r\n", last.len()).into_bytes();
    expected.extend_from_slice(&last);
    expected.extend_from_slice(b"\r\n");
    assert_eq!(
        reopened.batch(b"GET k\r\n").0,
        [String::from_utf8(expected).unwrap()]
    );
}

/// A random batch of writes over every type, with expiry.
fn random_batch(rng: &mut XorShift) -> Vec<u8> {
    const KEYS: &[&[u8]] = &[b"a", b"b", b"c", b"d", b"l", b"s", b"h", b"z", b"e"];
    let mut input = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let key = KEYS[rng.below(KEYS.len())];
        let small = format!("{}", rng.below(50));
        let big = vec![b'0' + rng.below(10) as u8; rng.below(700)];
        let n = small.as_bytes();
        let args: Vec<&[u8]> = match rng.below(14) {
            0 | 1 => vec![b"SET", key, &big],
            2 => vec![b"SET", key, n, b"PX", b"40"],
            3 => vec![b"INCR", key],
            4 => vec![b"DEL", key],
            5 => vec![b"RPUSH", key, n, &big],
            6 => vec![b"LPOP", key],
            7 => vec![b"SADD", key, n, &big],
            8 => vec![b"SPOP", key],
            9 => vec![b"HSET", key, n, &big],
            10 => vec![b"ZADD", key, n, &big],
            11 => vec![b"EXPIRE", key, b"1"],
            12 => vec![b"APPEND", key, &big],
            _ => vec![b"FLUSHALL"],
        };
        if args[0] == b"FLUSHALL" && rng.below(20) != 0 {
            continue;
        }
        input.extend(multibulk(&args));
    }
    input
}

/// Runs `batches` random batches from `seed` on a small disk, reopening
/// once midway, with the machine dying at disk request `crash_at` (if
/// reached, that write torn after `torn` sectors). Checks that a reopen
/// after the crash has every acknowledged write. Returns the disk requests
/// made and whether a compaction was running when the machine died.
fn crash_run(seed: u64, batches: usize, crash_at: Option<u64>, torn: usize) -> (u64, bool) {
    let mut rng = XorShift(seed);
    // 120 sectors: regions of 59, so compaction runs often.
    let mut server = Server::open(SimDisk::new(120), 1_000).unwrap();
    let mut requests = 0;
    for round in 0..2 {
        server.journal.disk.requests = 0;
        server.journal.disk.crash_at = crash_at.filter(|_| round == 1);
        server.journal.disk.torn = torn;
        let mut acknowledged = dump(&server.kv);
        for _ in 0..batches / 2 {
            let input = random_batch(&mut rng);
            let compacting = server.journal.compacting();
            let (_, committed, states) = server.batch_states(&input);
            server.now += rng.below(30) as u64;
            if server.journal.disk.dead {
                // Any prefix of the batch may have reached the disk. A
                // compaction leaves out keys already expired, so the
                // stores are compared as they look now.
                let now = server.now;
                let recovered = alive(&dump(&reopen(server.image(), now).kv), now);
                // A committed batch was acknowledged whole.
                let found = if committed {
                    states.last().unwrap_or(&acknowledged) == &recovered
                        || alive(states.last().unwrap_or(&acknowledged), now) == recovered
                } else {
                    core::iter::once(&acknowledged)
                        .chain(&states)
                        .any(|state| alive(state, now) == recovered)
                };
                assert!(
                    found,
                    "seed {seed:x} crash at {crash_at:?} torn {torn}: lost an acknowledged \
                     write (committed {committed}): recovered {} keys, acknowledged {}",
                    recovered.len(),
                    alive(&acknowledged, now).len()
                );
                return (requests, compacting);
            }
            if committed {
                acknowledged = dump(&server.kv);
            }
        }
        requests = server.journal.disk.requests;
        server = reopen(server.image(), server.now);
    }
    (requests, false)
}

/// Every disk request of several runs is tried as the moment the machine
/// dies, in compactions and commits alike.
#[test]
fn a_crash_at_any_disk_request_loses_no_acknowledged_write() {
    let mut in_compaction = 0;
    for seed in 1..=4u64 {
        let seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (requests, _) = crash_run(seed, 120, None, 0);
        assert!(requests > 80, "{requests}");
        for crash_at in 1..=requests {
            let (_, compacting) = crash_run(seed, 120, Some(crash_at), (crash_at % 3) as usize);
            in_compaction += u64::from(compacting);
        }
    }
    assert!(in_compaction > 40, "{in_compaction}");
}

/// Records an unfinished compaction left in a region are never read as
/// the continuation of a later compaction's log there, even when that
/// log repeats the unfinished one's first records byte for byte.
#[test]
fn an_unfinished_compactions_records_never_follow_a_later_log() {
    // A value making the record that recreates k exactly one sector: a
    // later log of that one record ends where A's next record starts.
    let one = multibulk(&[b"SET", b"k", &[b'1'; 484]]);
    let two = multibulk(&[b"SET", b"k", &[b'2'; 484]]);
    let mut server = Server::open(SimDisk::new(120), 1_000).unwrap();
    server.requests(&one);
    // Compaction A writes k = 1, then k changes behind it: its last
    // record (DEL k, SET k 2) is written, and the machine dies at the
    // header write that would have switched to it.
    server.journal.start_compaction(&mut server.kv, 2_000);
    server.journal.compact_step(&mut server.kv);
    assert_eq!(
        server.journal.compaction.as_ref().unwrap().writer.len(),
        SECTOR_SIZE
    );
    server.requests(&two);
    let requests = server.journal.disk.requests;
    server.journal.disk.crash_at = Some(requests + 3);
    server.journal.compact_step(&mut server.kv);
    assert!(server.journal.disk.dead);
    // After the reboot k goes back to 1 and compaction B writes k = 1 at
    // the same time as A (a clock set back): the same first record as
    // A's, in the same region.
    let mut server = reopen(server.image(), 3_000);
    server.requests(&one);
    server.journal.start_compaction(&mut server.kv, 2_000);
    while server.journal.compacting() {
        server.journal.compact_step(&mut server.kv);
    }
    assert_eq!(server.journal.status().compactions, 1);
    let reopened = reopen(server.image(), 4_000);
    assert_eq!(dump(&reopened.kv), dump(&server.kv));
}

#[test]
fn a_failing_disk_refuses_writes_until_it_works_again() {
    let mut server = Server::open(SimDisk::new(256), 1_000).unwrap();
    server.batch(b"SET a 1\r\n");
    server.journal.disk.failing = true;
    let (replies, committed) = server.batch(b"SET a 2\r\n");
    // The reply waits for the commit, which failed: the server sends an
    // error instead; the change stays in memory, and is written later.
    assert_eq!(replies, ["+OK\r\n"]);
    assert!(!committed);
    assert!(server.journal.failed());
    let (replies, _) = server.batch(b"SET b 1\r\nGET a\r\n");
    assert_eq!(replies, ["-ERR disk write failed\r\n", "$1\r\n2\r\n"]);
    server.journal.disk.failing = false;
    let (replies, committed) = server.batch(b"SET b 1\r\n");
    assert_eq!(replies, ["+OK\r\n"]);
    assert!(committed && !server.journal.failed());
    let reopened = reopen(server.image(), 2_000);
    assert_eq!(dump(&reopened.kv), dump(&server.kv));
}

#[test]
fn live_data_larger_than_a_region_fills_the_disk_without_thrashing() {
    let mut server = Server::open(SimDisk::new(100), 1_000).unwrap();
    let value = vec![b'v'; 1000];
    let mut refused = 0;
    for i in 0..60 {
        let key = format!("k{i}");
        let (replies, _) = server.batch(&multibulk(&[b"SET", key.as_bytes(), &value]));
        if replies[0] == "-ERR disk full\r\n" {
            refused += 1;
        } else {
            assert_eq!(replies[0], "+OK\r\n");
        }
    }
    assert!(refused > 0);
    let compactions = server.journal.status().compactions;
    for _ in 0..20 {
        let (replies, _) = server.batch(&multibulk(&[b"SET", b"k0", &value]));
        assert_eq!(replies, ["-ERR disk full\r\n"]);
        assert!(!server.journal.compacting());
    }
    assert_eq!(server.journal.status().compactions, compactions);
    // Reads and deletes go on; a delete makes room again.
    assert_eq!(server.batch(b"DEL k1 k2 k3\r\n").0, [":3\r\n"]);
    let reopened = reopen(server.image(), 2_000);
    assert_eq!(dump(&reopened.kv), dump(&server.kv));
}
