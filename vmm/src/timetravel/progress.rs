//! A progress bar, in exits, for replays that take long.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ft_logging::{Record, SourceError};
use indicatif::{ProgressBar, ProgressStyle};
use replay::RecordStream;

/// Replays shorter than this show no progress bar.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);
/// Exits between moves of the progress bar.
const PROGRESS_EXITS: u64 = 4096;

/// A trace read by a replay that shows a progress bar, in exits, on stderr
/// when the replay takes longer than a second and stderr is a terminal.
#[derive(Debug)]
pub struct Progress<S: RecordStream> {
    stream: S,
    /// Exits in the whole replay; 0 shows no bar.
    total_exits: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    /// The exit the bar last moved to.
    shown: u64,
}

impl<S: RecordStream> Progress<S> {
    /// Shows a bar for a replay of `total_exits` exits; with 0, never.
    pub fn new(stream: S, total_exits: u64) -> Self {
        Self {
            stream,
            total_exits,
            started: Instant::now(),
            bar: None,
            shown: 0,
        }
    }

    fn update(&mut self, exit: u64) {
        self.shown = exit;
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
}

impl<S: RecordStream> RecordStream for Progress<S> {
    fn next_record(&mut self, exit: u64) -> Result<Option<Record>, SourceError> {
        if exit >= self.shown + PROGRESS_EXITS {
            self.update(exit);
        }
        self.stream.next_record(exit)
    }
}

impl<S: RecordStream> Drop for Progress<S> {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
