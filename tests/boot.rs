//! Booting real guests through the real binary under KVM.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::{TIMEOUT, assemble_guest, finish, ftvm, run, scratch_dir};

#[test]
fn hello_prints_its_greeting_and_command_line() {
    let out = run(&[
        "run",
        "--kernel",
        "hello",
        "--cmdline",
        "greeting=yes exit=0",
    ]);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(
        out.stdout, "Hello from the ftvm guest!\ncmdline: greeting=yes exit=0\n",
        "{out:#?}"
    );
}

#[test]
fn the_guest_exit_status_passes_through() {
    let out = run(&["run", "--kernel", "hello", "--cmdline", "exit=42"]);
    assert_eq!(out.code(), 42, "{out:#?}");
    let out = run(&[
        "run",
        "--kernel",
        "hello",
        "--cmdline",
        "exit=255",
        "--mem-mib",
        "16",
    ]);
    assert_eq!(out.code(), 255, "{out:#?}");
}

/// (tick number, PIT count, RTC time) of each tick line.
fn ticks(stdout: &str) -> Vec<(u64, u32, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("tick ")?;
            let mut fields = rest.split(' ');
            let n = fields.next()?.parse().ok()?;
            let pit = fields.next()?.strip_prefix("pit=")?.parse().ok()?;
            let rtc = fields.next()?.strip_prefix("rtc=")?.to_owned();
            Some((n, pit, rtc))
        })
        .collect()
}

#[test]
fn ticker_counts_timer_interrupts_and_reads_the_clocks() {
    let out = run(&["run", "--kernel", "ticker", "--cmdline", "ticks=5 hz=50"]);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(
        out.stdout.starts_with("ticker: 5 ticks at 50 Hz\n"),
        "{out:#?}"
    );
    assert!(out.stdout.ends_with("ticker: done\n"), "{out:#?}");
    let ticks = ticks(&out.stdout);
    let numbers: Vec<u64> = ticks.iter().map(|t| t.0).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5], "{out:#?}");
    let divisor = 1_193_182 / 50;
    for (_, pit, rtc) in &ticks {
        assert!(
            *pit <= divisor,
            "PIT count {pit} above the divisor {divisor}"
        );
        let hms: Vec<u32> = rtc.split(':').map(|f| f.parse().unwrap()).collect();
        assert!(
            hms.len() == 3 && hms[0] < 24 && hms[1] < 60 && hms[2] < 60,
            "{rtc}"
        );
    }
}

#[test]
fn ticker_runs_at_the_programmed_rate() {
    // 20 ticks at 20 Hz take about a second of host time.
    let start = std::time::Instant::now();
    let out = run(&["run", "--kernel", "ticker", "--cmdline", "ticks=20 hz=20"]);
    let elapsed = start.elapsed();
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(ticks(&out.stdout).len(), 20);
    assert!(
        elapsed >= Duration::from_millis(900),
        "too fast: {elapsed:?}"
    );
}

#[test]
fn ticker_echoes_serial_input_in_upper_case() {
    let mut child = ftvm()
        .args(["run", "--kernel", "ticker", "--cmdline", "ticks=30 hz=20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        stdin.write_all(b"hello, ").unwrap();
        thread::sleep(Duration::from_millis(200));
        stdin.write_all(b"guest\n").unwrap();
    });
    let out = finish(child, TIMEOUT);
    assert_eq!(out.code(), 0, "{out:#?}");
    let echoed: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("tick") && !l.starts_with("ticker"))
        .collect();
    assert_eq!(echoed, "HELLO, GUEST", "{out:#?}");
    assert_eq!(ticks(&out.stdout).len(), 30);
}

#[test]
fn a_hand_written_pvh_guest_boots() {
    let dir = scratch_dir("pvh-hand");
    let elf = assemble_guest("pvh_hand", &dir);
    let out = run(&[
        "run",
        "--kernel",
        elf.to_str().unwrap(),
        "--cmdline",
        "from the test",
    ]);
    assert_eq!(out.code(), 42, "{out:#?}");
    assert!(out.stdout.starts_with("PVH hand-made guest OK"), "{out:#?}");
    assert!(out.stdout.contains("from the test"), "{out:#?}");
}

#[test]
fn an_instruction_the_host_cannot_emulate_is_named() {
    let dir = scratch_dir("simd");
    let elf = assemble_guest("simd", &dir);
    let out = run(&["run", "--kernel", elf.to_str().unwrap()]);
    assert!(out.stdout.contains("about to run xorps"), "{out:#?}");
    out.assert_refused(122, "xorps xmm0,xmm0");
    assert!(out.stderr.contains("(bytes 0f 57 c0)"), "{out:#?}");
}
