//! The event stream of `--events PATH`: one JSON object per line, written
//! by a thread of its own so that a slow or full disk never holds up the
//! guest. A line that cannot be written is dropped (with one warning) and
//! cut off the file again, so the file stays whole lines.
//!
//! Version 1 of the stream, documented in the README: every line has
//! `"v": 1`, `"time_ms"` (Unix milliseconds) and `"event"`, then the
//! event's own fields. A consumer ignores fields it does not know.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;

use super::MonitorError;

/// The version of the stream's format, in every line.
pub const VERSION: u32 = 1;

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 4096;
/// How long the end of a run waits for the writer to write what is queued.
const CLOSE_PATIENCE: Duration = Duration::from_secs(2);

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The process started: its command (`run`, `record`, `primary`,
    /// `backup`, `standby`), the kernel it was given and its process id.
    Started {
        /// The command: `run`, `record`, `primary`, `backup`, `standby`.
        role: String,
        /// The kernel, as given to `--kernel`.
        kernel: String,
        /// The process id.
        pid: u32,
    },
    /// The pair formed with the peer at this address.
    Paired {
        /// The peer's address.
        peer: String,
    },
    /// The peer is gone (silent past the timeout, its connection closed or
    /// broken).
    PeerLost {
        /// Why.
        reason: String,
    },
    /// A backup went live at exit `exit`: how long detecting the loss,
    /// replaying what was received and going live took, what it emitted
    /// again, and the frames that had queued on its TAP while it was a
    /// backup, which it dropped.
    Live {
        /// The first exit it ran live.
        exit: u64,
        /// From the last word from the primary to its loss.
        detection_ms: u64,
        /// Replaying what was left of the log.
        drain_ms: u64,
        /// Taking the flag and going live.
        golive_ms: u64,
        /// Console bytes emitted again.
        reemitted_console_bytes: u64,
        /// Frames sent again.
        reemitted_frames: u64,
        /// Disk requests issued again.
        reissued_requests: u64,
        /// Frames dropped that had queued on its TAP.
        discarded_frames: u64,
    },
    /// A backup's replay took another path than the primary's guest.
    Diverged {
        /// The exit where it was found.
        exit: u64,
        /// The divergence.
        what: String,
    },
    /// A live primary began sending its running guest to a new backup
    /// (re-protection).
    TransferStarted {
        /// The new backup's address.
        peer: String,
    },
    /// That transfer failed; the primary goes on unprotected.
    TransferFailed {
        /// The new backup's address.
        peer: String,
        /// Why it failed.
        reason: String,
    },
    /// The new backup has the guest: the pair is protected again after a
    /// pause of the guest of `pause_ms`, `bytes` sent in `rounds` rounds,
    /// `to_protected_ms` after the transfer started.
    Protected {
        /// The new backup's address.
        peer: String,
        /// How long the guest was paused.
        pause_ms: u64,
        /// Bytes sent.
        bytes: u64,
        /// Rounds of sending what changed.
        rounds: u64,
        /// From `transfer_started` to now.
        to_protected_ms: u64,
    },
    /// The process ends with exit status `status`.
    Ended {
        /// The exit status.
        status: u8,
        /// Why it ends.
        reason: String,
    },
    /// Once a second: exits so far, how far the backup trails (a primary)
    /// or the replay trails the log received (a backup), log bytes so far,
    /// outputs held by the output rule now, time stalled by flow control.
    Progress {
        /// Exits counted so far.
        exits: u64,
        /// How far behind the backup, or the replay, is.
        lag_ms: u64,
        /// Log bytes so far.
        log_bytes: u64,
        /// Outputs the output rule holds now.
        held_outputs: u64,
        /// Time flow control stalled the primary, in all.
        stall_ms: u64,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    v: u32,
    time_ms: u64,
    #[serde(flatten)]
    event: &'a Event,
}

/// The JSON line of `event`, happening at `time_ms`.
pub fn line(event: &Event, time_ms: u64) -> String {
    let mut line = serde_json::to_string(&Line {
        v: VERSION,
        time_ms,
        event,
    })
    .expect("events serialize");
    line.push('\n');
    line
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The events file and the thread that writes it.
#[derive(Debug)]
pub struct EventLog {
    lines: Mutex<Option<Sender<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Warned once that lines were dropped because the writer fell behind.
    warned_full: AtomicBool,
}

impl EventLog {
    /// Creates (or truncates) the file at `path`: a path that cannot be
    /// written is refused now, before the run.
    pub fn create(path: &Path) -> Result<Self, MonitorError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| MonitorError::Events {
                path: path.to_owned(),
                source,
            })?;
        let (lines, queue) = crossbeam_channel::bounded(QUEUE);
        let path = path.to_owned();
        let writer = thread::Builder::new()
            .name("ftvm-events".into())
            .spawn(move || write_lines(file, &path, &queue))
            .map_err(MonitorError::Thread)?;
        Ok(Self {
            lines: Mutex::new(Some(lines)),
            writer: Mutex::new(Some(writer)),
            warned_full: AtomicBool::new(false),
        })
    }

    /// Queues `event` for the file; never waits.
    pub fn write(&self, event: &Event) {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let Some(lines) = lines.as_ref() else {
            return;
        };
        match lines.try_send(line(event, unix_ms())) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                if !self.warned_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!("the events file is written too slowly; events are dropped");
                }
            }
        }
    }

    /// Writes out what is queued (for a bounded time) and closes the file;
    /// later events are dropped.
    pub fn close(&self) {
        drop(self.lines.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let deadline = Instant::now() + CLOSE_PATIENCE;
        while !writer.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        if writer.is_finished() {
            let _ = writer.join();
        }
    }
}

/// Writes each line with one write, as it comes. A line that fails is cut
/// off again (a regular file), so a full disk leaves whole lines behind.
fn write_lines(mut file: File, path: &Path, lines: &Receiver<String>) {
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    let mut written = 0u64;
    let mut warned = false;
    for line in lines {
        match file.write_all(line.as_bytes()) {
            Ok(()) => written += line.len() as u64,
            Err(error) => {
                if regular {
                    let _ = file.set_len(written);
                    let _ = file.seek(SeekFrom::Start(written));
                }
                if !warned {
                    warned = true;
                    tracing::warn!(path = %path.display(), %error, "cannot write the events file; events are dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_version_the_time_and_the_event_then_its_fields() {
        let text = line(
            &Event::Ended {
                status: 118,
                reason: "divergence at exit 7: \"x\"".into(),
            },
            1_700_000_000_123,
        );
        assert_eq!(
            text,
            "{\"v\":1,\"time_ms\":1700000000123,\"event\":\"ended\",\"status\":118,\"reason\":\"divergence at exit 7: \\\"x\\\"\"}\n"
        );
        let progress: serde_json::Value = serde_json::from_str(&line(
            &Event::Progress {
                exits: 5,
                lag_ms: 1,
                log_bytes: 2,
                held_outputs: 3,
                stall_ms: 4,
            },
            9,
        ))
        .unwrap();
        assert_eq!(progress["event"], "progress");
        assert_eq!(progress["held_outputs"], 3);
    }

    #[test]
    fn an_unusable_path_is_refused() {
        let dir = std::env::temp_dir().join(format!("ftvm-events-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(EventLog::create(&dir).is_err(), "a directory");
        assert!(EventLog::create(&dir.join("no/such/dir/events")).is_err());
        let log = EventLog::create(&dir.join("events")).unwrap();
        log.write(&Event::PeerLost {
            reason: "gone".into(),
        });
        log.close();
        log.write(&Event::PeerLost {
            reason: "after the close".into(),
        });
        let text = std::fs::read_to_string(dir.join("events")).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"reason\":\"gone\""), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
