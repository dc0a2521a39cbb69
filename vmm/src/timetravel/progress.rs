//! A progress bar, in exits, for replays that take long.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ft_logging::{End, Event, EventSource, ExitDone, ExitQuery, SourceError, StateDigest};
use indicatif::{ProgressBar, ProgressStyle};

/// Replays shorter than this show no progress bar.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);
/// Exits between looks at the progress bar.
const PROGRESS_EXITS: u64 = 4096;

/// A replay source that keeps the virtual time the replay is at, and
/// shows a progress bar, in exits, on stderr when the replay takes longer
/// than a second and stderr is a terminal.
#[derive(Debug)]
pub struct Progress<S> {
    source: S,
    /// The last time sample applied, in virtual nanoseconds.
    now_ns: u64,
    /// Exits in the whole replay; 0 shows no bar.
    total_exits: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl<S: EventSource> Progress<S> {
    /// Shows a bar for a replay of `total_exits` exits; with 0, never.
    pub fn new(source: S, total_exits: u64) -> Self {
        Self {
            source,
            now_ns: 0,
            total_exits,
            started: Instant::now(),
            bar: None,
        }
    }

    fn update(&mut self, exit: u64) {
        if self.bar.is_none()
            && self.total_exits != 0
            && self.started.elapsed() > PROGRESS_DELAY
            && std::io::stderr().is_terminal()
        {
            let bar = ProgressBar::new(self.total_exits);
            bar.set_style(
                ProgressStyle::with_template(
                    "replaying {bar:40} {percent:>3}% {human_pos}/{human_len} exits, eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(exit);
        }
    }

    /// The virtual time of the replay, in nanoseconds since boot.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// The source, once the bar is gone.
    pub fn finish(self) -> S {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        self.source
    }
}

impl<S: EventSource> EventSource for Progress<S> {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        let first = events.len();
        self.source.events(query, events)?;
        for event in &events[first..] {
            if let Event::Time { ns } = event {
                self.now_ns = *ns;
            }
        }
        Ok(())
    }

    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError> {
        if done.exit.is_multiple_of(PROGRESS_EXITS) {
            self.update(done.exit);
        }
        self.source.exit_done(done)
    }

    fn state(&mut self, exit: u64, digest: StateDigest) -> Result<(), SourceError> {
        self.source.state(exit, digest)
    }

    fn end(&mut self, end: &End) -> Result<(), SourceError> {
        self.source.end(end)
    }
}
