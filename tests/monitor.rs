//! What a single ftvm tells programs: its event stream (`--events`) and
//! its Prometheus metrics (`--metrics`), and how bad settings of either
//! are refused.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::events::{EventFile, names};
use common::metrics::scrape;
use common::pair::{Side, free_address, tick_numbers};

const USAGE: i32 = 125;

#[test]
fn an_unusable_events_path_is_refused_before_the_guest_runs() {
    let dir = common::scratch_dir("events-refused");
    let missing = dir.join("no/such/dir/events.jsonl");
    for path in [dir.to_str().unwrap(), missing.to_str().unwrap()] {
        let out = common::run(&["run", "--kernel", "hello", "--events", path]);
        assert_eq!(out.code(), USAGE, "{path:?}: {out:#?}");
        assert_eq!(out.stdout, "", "the guest ran: {out:#?}");
        let lines: Vec<_> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{out:#?}");
        assert!(lines[0].starts_with("ftvm: error: "), "{out:#?}");
        assert!(lines[0].contains("events"), "{out:#?}");
    }
    // clap's own words for an empty value.
    let out = common::run(&["run", "--kernel", "hello", "--events", ""]);
    assert_eq!(out.code(), USAGE, "{out:#?}");
    assert!(out.stderr.contains("--events"), "{out:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_address_metrics_cannot_bind_is_refused_before_the_guest_runs() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = common::run(&["run", "--kernel", "hello", "--metrics", &address]);
    out.assert_refused(USAGE, "cannot serve metrics");
    assert_eq!(out.stdout, "");
    let out = common::run(&["run", "--kernel", "hello", "--metrics", "nowhere"]);
    assert_eq!(out.code(), USAGE, "{out:#?}");
}

/// Runs `ftvm ARGS --events FILE`: what it left, and its event stream.
fn run_with_events(args: &[&str]) -> (common::Finished, Vec<serde_json::Value>) {
    let events = EventFile::new();
    let mut all = args.to_vec();
    all.extend(["--events", events.path().to_str().unwrap()]);
    let out = common::run(&all);
    (out, events.read())
}

#[test]
fn a_run_says_it_started_progresses_and_ended() {
    let (out, stream) =
        run_with_events(&["run", "--kernel", "ticker", "--cmdline", "ticks=30 hz=20"]);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(names(&stream), ["started", "ended"], "{stream:#?}");
    let started = &stream[0];
    assert_eq!(started["role"], "run");
    assert_eq!(started["kernel"], "ticker");
    assert!(started["pid"].as_u64().is_some_and(|pid| pid > 0));
    let ended = stream.last().unwrap();
    assert_eq!(ended["status"], 0);
    assert_eq!(ended["reason"], "the guest exited with 0");
    // 1.5 s of guest time: a progress event a second, its exits growing.
    let progress: Vec<_> = stream.iter().filter(|e| e["event"] == "progress").collect();
    assert!(!progress.is_empty(), "{stream:#?}");
    for field in ["exits", "lag_ms", "log_bytes", "held_outputs", "stall_ms"] {
        assert!(progress[0][field].is_u64(), "{field}: {stream:#?}");
    }
    assert!(progress[0]["exits"].as_u64().unwrap() > 0);
    let times: Vec<u64> = stream
        .iter()
        .map(|e| e["time_ms"].as_u64().unwrap())
        .collect();
    assert!(times.is_sorted(), "{times:?}");
}

#[test]
fn a_recording_counts_its_trace_as_log_and_a_failure_ends_the_stream() {
    let dir = common::scratch_dir("events-record");
    let trace = dir.join("run.trace");
    let (out, stream) = run_with_events(&[
        "record",
        "--trace",
        trace.to_str().unwrap(),
        "--kernel",
        "hello",
        "--cmdline",
        "exit=7",
    ]);
    assert_eq!(out.code(), 7, "{out:#?}");
    assert_eq!(names(&stream), ["started", "ended"], "{stream:#?}");
    assert_eq!(stream[0]["role"], "record");
    assert_eq!(stream[1]["status"], 7);

    // A failure after the start still ends the stream, with its status.
    let missing = dir.join("missing.img");
    let (out, stream) = run_with_events(&[
        "run",
        "--kernel",
        "hello",
        "--disk",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 113, "{out:#?}");
    assert_eq!(names(&stream), ["started", "ended"], "{stream:#?}");
    assert_eq!(stream[1]["status"], 113);
    assert!(
        stream[1]["reason"]
            .as_str()
            .unwrap()
            .contains("missing.img"),
        "{stream:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs of 64 KiB mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(test: &str) -> Self {
        let dir = common::scratch_dir(test);
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount (the tests run as root)");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {}",
            dir.display()
        );
        Self { dir }
    }

    /// Writes a file until the disk is full.
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = [0u8; 4096];
        while filler.write_all(&block).is_ok() {}
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_full_disk_under_the_events_file_does_not_stop_the_guest() {
    let disk = SmallDisk::mount("events-full");
    disk.fill();
    let events = disk.path("events.jsonl");
    let out = common::run(&[
        "run",
        "--kernel",
        "ticker",
        "--cmdline",
        "ticks=30 hz=20",
        "--events",
        events.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(tick_numbers(&out.stdout), (1..=30).collect::<Vec<_>>());
    // Every event was dropped, with one warning.
    let warnings: Vec<_> = out.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{out:#?}");
    assert!(warnings[0].contains("events"), "{out:#?}");
    assert_eq!(std::fs::read_to_string(&events).unwrap(), "");
}

#[test]
fn a_runs_metrics_pass_promtool_and_follow_the_run() {
    let address = free_address();
    let side = Side::start(
        &[
            "run",
            "--kernel",
            "ticker",
            "--cmdline",
            "ticks=60 hz=20",
            "--metrics",
            &address.to_string(),
        ]
        .map(String::from),
    );
    let first = wait_scrape(address, |_| true);
    assert_eq!(first.status_line, "HTTP/1.1 200 OK");
    assert_eq!(first.content_type, "text/plain; version=0.0.4");
    first.assert_promtool_clean();
    assert_eq!(first.role().as_deref(), Some("run"));
    let exits = first.value("ftvm_exits_total").unwrap();
    let later = wait_scrape(address, |scrape| {
        scrape.value("ftvm_exits_total").unwrap() > exits
    });
    later.assert_promtool_clean();
    assert_eq!(later.value("ftvm_paired"), Some(0.0));
    assert_eq!(later.value("ftvm_takeovers_total"), Some(0.0));
    let other = scrape_path(address, "/other");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let out = side.finish(TIMEOUT);
    assert_eq!(out.code(), 0, "{out:#?}");
}

/// Scrapes `address` until `wanted` holds.
fn wait_scrape(
    address: std::net::SocketAddr,
    wanted: impl Fn(&common::metrics::Scrape) -> bool,
) -> common::metrics::Scrape {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(scrape) = scrape(address).filter(|s| wanted(s)) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "no such metrics at {address}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The raw response to `GET path`.
fn scrape_path(address: std::net::SocketAddr, path: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
