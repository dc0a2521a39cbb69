//! The event stream a test's ftvm writes with `--events`: its file, read
//! back as JSON, one event per line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A fresh events file, removed when dropped.
#[derive(Debug)]
pub struct EventFile {
    path: PathBuf,
}

impl Default for EventFile {
    fn default() -> Self {
        Self::new()
    }
}

impl EventFile {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ftvm-test-events-{}-{n}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every whole line written so far, each of which must be an event of
    /// version 1.
    pub fn read(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        parse(&text)
    }

    /// Waits until the stream holds `event`, and returns it.
    pub fn wait_for(&self, event: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(found) = self.read().into_iter().find(|e| e["event"] == event) {
                return Some(found);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for EventFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The events of `text`: whole lines only (the last may still be written).
pub fn parse(text: &str) -> Vec<Value> {
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    whole
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            assert_eq!(event["v"], 1, "{line}");
            assert!(event["time_ms"].is_u64(), "{line}");
            assert!(event["event"].is_string(), "{line}");
            event
        })
        .collect()
}

/// The names of `events` other than `progress`, in order.
pub fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|name| *name != "progress")
        .map(String::from)
        .collect()
}
