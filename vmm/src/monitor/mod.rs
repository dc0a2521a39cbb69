//! What a running ftvm tells programs about itself: the event stream of
//! `--events` (JSON Lines) and the Prometheus metrics of `--metrics`, both
//! fed by one set of counters, [`Stats`]. Log lines are for people; these
//! are the interface.

mod events;
mod metrics;
mod stats;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

pub use events::{Event, EventLog, VERSION, line, unix_ms};
pub use metrics::{CONTENT_TYPE, MetricsServer};
pub use stats::{DiskCounters, NetCounters, Role, Stats};

/// How often a `progress` event goes out.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why the events file or the metrics endpoint cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The events file cannot be created or written.
    #[error("cannot write events to {}: {source}", path.display())]
    Events {
        /// The file.
        path: PathBuf,
        /// The error underneath.
        #[source]
        source: std::io::Error,
    },
    /// The metrics address cannot be bound.
    #[error("cannot serve metrics on {address}: {reason}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A thread cannot be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A run's counters, its event stream and its metrics endpoint.
#[derive(Debug)]
pub struct Monitor {
    stats: Arc<Stats>,
    events: Option<Arc<EventLog>>,
    /// Dropping the sender stops the progress thread.
    progress: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    _metrics: Option<MetricsServer>,
}

impl Monitor {
    /// Opens the events file and binds the metrics address, either of
    /// which may be refused here, before anything runs.
    pub fn start(
        events: Option<&Path>,
        metrics: Option<SocketAddr>,
    ) -> Result<Arc<Self>, MonitorError> {
        let stats = Arc::new(Stats::new());
        let events = events.map(EventLog::create).transpose()?.map(Arc::new);
        let metrics = metrics
            .map(|address| MetricsServer::bind(address, stats.clone()))
            .transpose()?;
        Ok(Arc::new(Self {
            stats,
            events,
            progress: Mutex::new(None),
            _metrics: metrics,
        }))
    }

    /// Counters only: no events file, no endpoint.
    pub fn off() -> Arc<Self> {
        Arc::new(Self {
            stats: Arc::new(Stats::new()),
            events: None,
            progress: Mutex::new(None),
            _metrics: None,
        })
    }

    /// The counters and gauges.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Puts `event` on the stream, if there is one.
    pub fn emit(&self, event: Event) {
        if let Some(log) = &self.events {
            log.write(&event);
        }
    }

    /// The process started as `role` (its command) with `kernel`: says so,
    /// and from now on says how it progresses every second.
    pub fn started(&self, role: &str, kernel: &str) {
        self.emit(Event::Started {
            role: role.into(),
            kernel: kernel.into(),
            pid: std::process::id(),
        });
        if self.events.is_none() {
            return;
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let stats = self.stats.clone();
        let events = self.events.clone();
        let thread = thread::Builder::new()
            .name("ftvm-progress".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PROGRESS_EVERY) {
                    if let Some(events) = &events {
                        events.write(&progress(&stats));
                    }
                }
            });
        match thread {
            Ok(thread) => {
                *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, thread));
            }
            Err(error) => tracing::warn!(%error, "no progress events"),
        }
    }

    /// The process ends with `status` for `reason`: says so, and writes out
    /// the stream.
    pub fn ended(&self, status: u8, reason: &str) {
        if let Some((stop, thread)) = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            drop(stop);
            let _ = thread.join();
        }
        self.emit(Event::Ended {
            status,
            reason: reason.into(),
        });
        if let Some(log) = &self.events {
            log.close();
        }
    }
}

/// The `progress` event of `stats` now.
fn progress(stats: &Stats) -> Event {
    Event::Progress {
        exits: stats.exits.get(),
        lag_ms: (stats.lag_seconds.get() * 1e3) as u64,
        log_bytes: stats.log_bytes.get(),
        held_outputs: stats.held_outputs.get().max(0) as u64,
        stall_ms: stats.stall_ms(),
    }
}
