//! The go-live arbiter: an atomic test-and-set of a flag in a file on storage
//! both hosts of a primary/backup pair see (docs/DESIGN.md §4, "Going live").
//!
//! A side that loses its peer goes live only after winning the flag for the
//! generation its pair was formed at, so at most one side of a pair is ever
//! live, and a side of an older pair can never win once a newer pair formed.
//!
//! Every change is a read-modify-write under an exclusive OFD lock on the
//! whole file ([`crate::lock`]), made durable with `fsync` before the lock is
//! released; a new file is published with `link(2)` so no one ever sees it
//! half-written, and its directory is synced.

mod record;

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::lock::{self, LockKind};
use record::RECORD_LEN;
pub use record::{FlagState, MAX_OWNER_LEN, RecordError};

/// How often a waiting test-and-set tries again.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// The result of a test-and-set that reached the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The caller owns the generation it asked for and may go live.
    Won,
    /// The caller must not go live; this is what the flag showed.
    Lost(FlagState),
}

/// What went wrong with the arbiter file; every message is one line that
/// names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    /// `init` found the file already there.
    #[error("the arbiter file {} already exists (reset starts a new generation)", .path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The file cannot be created.
    #[error("cannot create the arbiter file {}: {source}", .path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// Its directory cannot be synced after the file was created.
    #[error("cannot sync the directory of the arbiter file {}: {source}", .path.display())]
    SyncDirectory {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// The file cannot be opened.
    #[error("cannot open the arbiter file {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// The file cannot be locked.
    #[error("cannot lock the arbiter file {}: {source}", .path.display())]
    Lock {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// Another open file description holds the lock (only from
    /// [`Arbiter::try_test_and_set`]; the other operations wait for it).
    #[error("the arbiter file {} is locked by someone else", .path.display())]
    Busy {
        /// The file.
        path: PathBuf,
    },
    /// The file cannot be read.
    #[error("cannot read the arbiter file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// The file is not a valid flag.
    #[error("the arbiter file {} is not a valid go-live flag: {source}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: RecordError,
    },
    /// The file cannot be written.
    #[error("cannot write the arbiter file {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// The file cannot be synced.
    #[error("cannot sync the arbiter file {}: {source}", .path.display())]
    Sync {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        source: io::Error,
    },
    /// The generation cannot grow any more.
    #[error("the arbiter file {} is at the last generation; nothing can follow it", .path.display())]
    LastGeneration {
        /// The file.
        path: PathBuf,
    },
    /// An owner name the flag cannot hold.
    #[error(
        "owner name {owner:?} for the arbiter file {} must be 1 to {MAX_OWNER_LEN} bytes without control characters",
        .path.display()
    )]
    InvalidOwner {
        /// The file.
        path: PathBuf,
        /// The name.
        owner: String,
    },
    /// The flag is not held by the owner that would change it.
    #[error(
        "cannot rearm the arbiter file {}: {owner:?} does not own generation {generation}, the flag shows {found}",
        .path.display()
    )]
    NotOwner {
        /// The file.
        path: PathBuf,
        /// The generation the owner holds.
        generation: u64,
        /// The owner named.
        owner: String,
        /// What the flag says.
        found: FlagState,
    },
    /// The caller's `give_up` ended a wait; `source` is why it was waiting
    /// and names the file.
    #[error("gave up waiting: {source}")]
    GaveUp {
        /// The last failure.
        source: Box<ArbiterError>,
    },
}

impl ArbiterError {
    /// Whether a waiting test-and-set should try again: the arbiter could
    /// not be reached, was busy, or holds no valid flag (damaged: it says
    /// nothing about who is live, so nobody may go live until it is
    /// repaired), as opposed to having answered. A failed write or sync is
    /// not retried: after a failed fsync the page cache may show a record
    /// the disk does not have, so a retry could "win" on data no other host
    /// sees.
    fn should_wait(&self) -> bool {
        matches!(
            self,
            Self::Open { .. }
                | Self::Lock { .. }
                | Self::Busy { .. }
                | Self::Read { .. }
                | Self::Invalid { .. }
        )
    }
}

/// The go-live flag at one path.
#[derive(Clone, Debug)]
pub struct Arbiter {
    path: PathBuf,
}

impl Arbiter {
    /// The flag in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Creates the flag file at generation 0 with no owner; refuses if the
    /// file exists.
    pub fn init(&self) -> Result<FlagState, ArbiterError> {
        let state = FlagState {
            generation: 0,
            owner: None,
        };
        let staging = self.staging_path()?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)
            .map_err(|source| self.err_create(source))?;
        let published = self.publish(file, &staging, &state);
        // The staging name was ours alone (create_new); linked or not, it is
        // only clutter now.
        if let Err(err) = fs::remove_file(&staging) {
            tracing::warn!(path = %staging.display(), error = %err, "cannot remove the staging file");
        }
        published?;
        self.sync_directory()?;
        Ok(state)
    }

    /// The flag's current state.
    pub fn status(&self) -> Result<FlagState, ArbiterError> {
        let file = File::open(&self.path).map_err(|source| self.err_open(source))?;
        lock::lock(&file, LockKind::Shared).map_err(|source| self.err_lock(source))?;
        self.read(&file)
    }

    /// Starts over: the next generation, no owner. An operator's tool; works
    /// on any valid file.
    pub fn reset(&self) -> Result<FlagState, ArbiterError> {
        let file = self.open_locked()?;
        let found = self.read(&file)?;
        let state = FlagState {
            generation: self.next_generation(found.generation)?,
            owner: None,
        };
        self.write(&file, &state)?;
        Ok(state)
    }

    /// One attempt at winning `generation` for `owner`: won if the flag shows
    /// that generation with no owner (the flag then names `owner`) or already
    /// names `owner` (so a retry after a lost reply is safe); lost otherwise.
    /// Fails with [`ArbiterError::Busy`] if someone else holds the lock.
    pub fn try_test_and_set(&self, generation: u64, owner: &str) -> Result<Outcome, ArbiterError> {
        self.check_owner(owner)?;
        let file = self.open_rw()?;
        if !lock::try_lock(&file, LockKind::Exclusive).map_err(|source| self.err_lock(source))? {
            return Err(ArbiterError::Busy {
                path: self.path.clone(),
            });
        }
        let found = self.read(&file)?;
        if found.generation != generation {
            return Ok(Outcome::Lost(found));
        }
        match found.owner.as_deref() {
            None => {}
            Some(current) if current == owner => return Ok(Outcome::Won),
            Some(_) => return Ok(Outcome::Lost(found)),
        }
        self.write(
            &file,
            &FlagState {
                generation,
                owner: Some(owner.to_owned()),
            },
        )?;
        Ok(Outcome::Won)
    }

    /// [`try_test_and_set`](Self::try_test_and_set) until the arbiter gives a
    /// definite answer: while the file cannot be opened, locked or read, is
    /// locked by someone else, or is not a valid flag, it tries again every
    /// 50 ms, because neither side may go live until the arbiter can be
    /// reached. `give_up` is asked after every failed attempt; once it
    /// returns true, this fails with [`ArbiterError::GaveUp`]. Otherwise it
    /// fails only for an invalid owner name, or a failed write or sync.
    pub fn test_and_set(
        &self,
        generation: u64,
        owner: &str,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Outcome, ArbiterError> {
        let mut waiting: Option<(Instant, mem::Discriminant<ArbiterError>)> = None;
        loop {
            let err = match self.try_test_and_set(generation, owner) {
                Ok(outcome) => {
                    if let Some((since, _)) = waiting {
                        tracing::info!(
                            path = %self.path.display(),
                            waited_ms = since.elapsed().as_millis() as u64,
                            "the arbiter answered"
                        );
                    }
                    return Ok(outcome);
                }
                Err(err) if err.should_wait() => err,
                Err(err) => return Err(err),
            };
            // Once per reason, not per attempt: a long wait stays one line.
            let reason = mem::discriminant(&err);
            if waiting.is_none_or(|(_, logged)| logged != reason) {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %err,
                    "waiting for the arbiter; not going live until it answers"
                );
                let since = waiting.map_or_else(Instant::now, |(since, _)| since);
                waiting = Some((since, reason));
            }
            if give_up() {
                return Err(ArbiterError::GaveUp {
                    source: Box::new(err),
                });
            }
            thread::sleep(RETRY_INTERVAL);
        }
    }

    /// The owner of `generation` starts a new pair: the next generation, no
    /// owner. Refused with [`ArbiterError::NotOwner`] unless the flag shows
    /// `owner` at `generation`.
    pub fn rearm(&self, generation: u64, owner: &str) -> Result<FlagState, ArbiterError> {
        self.check_owner(owner)?;
        let file = self.open_locked()?;
        let found = self.read(&file)?;
        if found.generation != generation || found.owner.as_deref() != Some(owner) {
            return Err(ArbiterError::NotOwner {
                path: self.path.clone(),
                generation,
                owner: owner.to_owned(),
                found,
            });
        }
        let state = FlagState {
            generation: self.next_generation(generation)?,
            owner: None,
        };
        self.write(&file, &state)?;
        Ok(state)
    }

    /// Refuses to wrap around, which would let a stale pair's generation
    /// come back; only a forged file gets this far.
    fn next_generation(&self, generation: u64) -> Result<u64, ArbiterError> {
        generation
            .checked_add(1)
            .ok_or_else(|| ArbiterError::LastGeneration {
                path: self.path.clone(),
            })
    }

    fn check_owner(&self, owner: &str) -> Result<(), ArbiterError> {
        if owner.is_empty() || owner.len() > MAX_OWNER_LEN || owner.chars().any(char::is_control) {
            return Err(ArbiterError::InvalidOwner {
                path: self.path.clone(),
                owner: owner.to_owned(),
            });
        }
        Ok(())
    }

    fn open_rw(&self) -> Result<File, ArbiterError> {
        // Write access is needed for an exclusive lock, not only to write.
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|source| self.err_open(source))
    }

    /// Opens the file and waits for its exclusive lock. Holders keep it for
    /// one read, write and fsync, so operator commands simply wait.
    fn open_locked(&self) -> Result<File, ArbiterError> {
        let file = self.open_rw()?;
        lock::lock(&file, LockKind::Exclusive).map_err(|source| self.err_lock(source))?;
        Ok(file)
    }

    fn read(&self, file: &File) -> Result<FlagState, ArbiterError> {
        // One byte more than a record is enough to tell a file that is too long.
        let mut bytes = Vec::with_capacity(RECORD_LEN + 1);
        file.take(RECORD_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ArbiterError::Read {
                path: self.path.clone(),
                source,
            })?;
        FlagState::decode(&bytes).map_err(|source| ArbiterError::Invalid {
            path: self.path.clone(),
            source,
        })
    }

    /// Overwrites the record in place and syncs it; callers hold the
    /// exclusive lock, which closing `file` releases only afterwards.
    fn write(&self, file: &File, state: &FlagState) -> Result<(), ArbiterError> {
        file.write_all_at(&state.encode(), 0)
            .map_err(|source| ArbiterError::Write {
                path: self.path.clone(),
                source,
            })?;
        // Durability point of every change: the flag must be on the shared
        // storage before anyone acts on it or the lock lets others read.
        file.sync_all().map_err(|source| ArbiterError::Sync {
            path: self.path.clone(),
            source,
        })
    }

    /// A name beside the flag file, unique to this process and call, to
    /// write a new file under before it is published.
    fn staging_path(&self) -> Result<PathBuf, ArbiterError> {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let name = self.path.file_name().ok_or_else(|| {
            self.err_create(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        let mut staging = std::ffi::OsString::from(".");
        staging.push(name);
        staging.push(format!(
            ".init-{}-{}",
            std::process::id(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(self.path.with_file_name(staging))
    }

    /// Writes `state` to the new `file` at `staging`, syncs it and links it
    /// to the flag's path, which fails if that exists: no one can open the
    /// flag before its contents are complete.
    fn publish(
        &self,
        mut file: File,
        staging: &Path,
        state: &FlagState,
    ) -> Result<(), ArbiterError> {
        file.write_all(&state.encode())
            .map_err(|source| ArbiterError::Write {
                path: self.path.clone(),
                source,
            })?;
        file.sync_all().map_err(|source| ArbiterError::Sync {
            path: self.path.clone(),
            source,
        })?;
        match fs::hard_link(staging, &self.path) {
            Ok(()) => Ok(()),
            // open(2) on NFS: a retransmitted LINK can fail although the
            // first one succeeded; a link count of 2 says it did.
            Err(_) if fs::metadata(staging).is_ok_and(|meta| meta.nlink() == 2) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(ArbiterError::AlreadyExists {
                    path: self.path.clone(),
                })
            }
            Err(err) => Err(self.err_create(err)),
        }
    }

    /// Makes the new file's directory entry durable.
    fn sync_directory(&self) -> Result<(), ArbiterError> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| ArbiterError::SyncDirectory {
                path: self.path.clone(),
                source,
            })
    }

    fn err_create(&self, source: io::Error) -> ArbiterError {
        ArbiterError::Create {
            path: self.path.clone(),
            source,
        }
    }

    fn err_open(&self, source: io::Error) -> ArbiterError {
        ArbiterError::Open {
            path: self.path.clone(),
            source,
        }
    }

    fn err_lock(&self, source: io::Error) -> ArbiterError {
        ArbiterError::Lock {
            path: self.path.clone(),
            source,
        }
    }
}
