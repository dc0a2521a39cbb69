//! `ftvm demo`: a primary and a backup of `ticker` on this machine, shown
//! side by side; the primary is killed and the backup takes over. With
//! `--net`, the guest is `kvstore` on a network of the demo's own, and a
//! client's connection to it carries on across the takeover. The demo
//! follows each side through its event stream (`--events`), and shows each
//! event as one status line of its column.

mod lan;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

use super::error::CliError;

/// Width of each column of the side-by-side view.
const COLUMN: usize = 44;
/// How long the demo waits for the backup to start.
const START_PATIENCE: Duration = Duration::from_secs(10);
/// How often the demo looks for new events.
const EVENT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Kill the primary (SIGKILL) this long after the pair formed.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    kill_after_ms: u64,
    /// Ticks the guest counts before it ends (at 20 a second).
    #[arg(long, default_value_t = 120, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    ticks: u64,
    /// Run `kvstore` on a network of its own instead (needs root): a client
    /// issues SETs on one TCP connection across the takeover.
    #[arg(long)]
    net: bool,
    /// With --net: SETs the client issues after the takeover before it
    /// reads every key back and the demo ends.
    #[arg(long, default_value_t = 30, value_name = "N")]
    sets_after: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Primary,
    Backup,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }
}

/// A line from one of the pair's processes, or from the demo's client.
#[derive(Debug)]
enum Line {
    Console(Side, String),
    /// A line a process wrote on stderr: a message for people.
    Message(Side, String),
    /// An event of a process's stream.
    Event(Side, Value),
    Client(String),
    /// The client is done: the servers may stop.
    ClientDone,
}

/// The pair's processes, killed if the demo ends before they do.
struct Pair {
    primary: Child,
    backup: Child,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in [&mut self.primary, &mut self.backup] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The files the pair shares, removed when the demo ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn demo(args: &DemoArgs) -> Result<u8, CliError> {
    let ftvm = std::env::current_exe().map_err(CliError::Host)?;
    let scratch = Scratch(std::env::temp_dir().join(format!("ftvm-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(CliError::Host)?;
    let (arbiter, key) = (scratch.0.join("arbiter"), scratch.0.join("key"));
    write_key(&key)?;
    let init = Command::new(&ftvm)
        .args(["arbiter", "init"])
        .arg(&arbiter)
        .stdout(Stdio::null())
        .status()
        .map_err(CliError::Host)?;
    if !init.success() {
        return Err(CliError::Usage(format!(
            "cannot create the arbiter file {}",
            arbiter.display()
        )));
    }
    // With --net the pair runs in the demo's namespace, where this port is
    // free; otherwise on this machine's loopback.
    let lan = args.net.then(lan::Lan::create).transpose()?;
    let port = match &lan {
        Some(_) => "127.0.0.1:7000".parse().expect("a socket address"),
        None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(CliError::Host)?,
    };
    let disk = scratch.0.join("kv.img");
    let guest = |side: Side| -> Vec<String> {
        match &lan {
            None => vec![
                "--kernel".into(),
                "ticker".into(),
                "--cmdline".into(),
                format!("ticks={} hz=20", args.ticks),
            ],
            Some(_) => vec![
                "--kernel".into(),
                "kvstore".into(),
                "--disk".into(),
                disk.display().to_string(),
                "--net".into(),
                format!(
                    "tap={}",
                    match side {
                        Side::Primary => lan::PRIMARY_TAP,
                        Side::Backup => lan::BACKUP_TAP,
                    }
                ),
                "--cmdline".into(),
                format!("ip={}/24", lan::GUEST_IP),
            ],
        }
    };
    if lan.is_some() {
        std::fs::write(&disk, vec![0u8; 4 << 20]).map_err(CliError::Host)?;
    }
    let events = |side: Side| scratch.0.join(format!("{}.events", side.name()));
    let pair = |side: Side| {
        let (role, peer_flag) = match side {
            Side::Primary => ("primary", "--backup"),
            Side::Backup => ("backup", "--listen"),
        };
        let mut command = match &lan {
            Some(lan) => lan.command(&ftvm),
            None => Command::new(&ftvm),
        };
        command
            .args([role, peer_flag, &port.to_string(), "--arbiter"])
            .arg(&arbiter)
            .arg("--auth-key")
            .arg(&key)
            .arg("--events")
            .arg(events(side))
            .args(guest(side));
        command
    };
    let what = if lan.is_some() {
        "`kvstore` (a Redis server) at 10.0.0.2"
    } else {
        "`ticker`"
    };
    out(&format!(
        "ftvm demo: {what} under a primary/backup pair on {port}; the go-live flag in {};\n\
         the primary is killed (SIGKILL) {} ms after the pair forms.\n",
        arbiter.display(),
        args.kill_after_ms
    ))?;
    out(&row("PRIMARY", "BACKUP"))?;
    out(&row(&"─".repeat(COLUMN), &"─".repeat(COLUMN)))?;

    let (lines_tx, lines) = crossbeam_channel::unbounded();
    let mut backup = spawn(
        pair(Side::Backup),
        Side::Backup,
        &events(Side::Backup),
        &lines_tx,
    )?;
    if let Err(error) = wait_started(&lines) {
        let _ = backup.kill();
        let _ = backup.wait();
        return Err(error);
    }
    let primary = spawn(
        pair(Side::Primary),
        Side::Primary,
        &events(Side::Primary),
        &lines_tx,
    )?;
    let (taken_over_tx, taken_over) = crossbeam_channel::bounded(1);
    let client = match &lan {
        Some(lan) => Some(lan.start_client(lines_tx.clone(), args.sets_after, taken_over)?),
        None => None,
    };
    drop(lines_tx);
    let mut pair = Pair { primary, backup };
    let status = show(args, &mut pair, &lines, &taken_over_tx)?;
    match client {
        Some(client) => {
            let served = client.join().unwrap_or(false);
            Ok(if served && status == 0 { 0 } else { 1 })
        }
        None => Ok(status),
    }
}

/// A fresh random key for the pair.
fn write_key(path: &Path) -> Result<(), CliError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|error| CliError::Host(std::io::Error::other(error.to_string())))?;
    std::fs::write(path, key).map_err(CliError::Host)
}

/// Starts a side of the pair, forwarding its console, its messages and the
/// events it writes to `events`.
fn spawn(
    mut command: Command,
    side: Side,
    events: &Path,
    lines: &Sender<Line>,
) -> Result<Child, CliError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CliError::Host)?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let ended = Arc::new(AtomicBool::new(false));
    forward(stdout, lines.clone(), move |line| Line::Console(side, line));
    let closed = ended.clone();
    thread::spawn({
        let lines = lines.clone();
        move || {
            forward_lines(stderr, &lines, |line| Line::Message(side, line));
            closed.store(true, Ordering::Release);
        }
    });
    let events = events.to_owned();
    let lines = lines.clone();
    thread::spawn(move || follow_events(&events, side, &lines, &ended));
    Ok(child)
}

fn forward(
    pipe: impl Read + Send + 'static,
    lines: Sender<Line>,
    wrap: impl Fn(String) -> Line + Send + 'static,
) {
    thread::spawn(move || forward_lines(pipe, &lines, wrap));
}

fn forward_lines(pipe: impl Read, lines: &Sender<Line>, wrap: impl Fn(String) -> Line) {
    let mut reader = BufReader::new(pipe);
    let mut buffer = Vec::new();
    while reader.read_until(b'\n', &mut buffer).is_ok_and(|n| n > 0) {
        let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
        buffer.clear();
        if lines.send(wrap(line)).is_err() {
            break;
        }
    }
}

/// Sends each event `side` writes to `path` as it comes, until the process
/// has ended (its stderr closed) and every event it wrote is sent.
fn follow_events(path: &Path, side: Side, lines: &Sender<Line>, ended: &AtomicBool) {
    let mut offset = 0;
    loop {
        let last_look = ended.load(Ordering::Acquire);
        let text = std::fs::read(path).unwrap_or_default();
        let whole = text
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |end| end + 1);
        for line in text
            .get(offset..whole)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
        {
            if let Ok(event) = serde_json::from_slice::<Value>(line)
                && lines.send(Line::Event(side, event)).is_err()
            {
                return;
            }
        }
        offset = offset.max(whole);
        if last_look {
            return;
        }
        thread::sleep(EVENT_POLL);
    }
}

/// Waits for the backup's `started` event (the primary tries to reach it
/// for a while, so it need not listen yet).
fn wait_started(lines: &Receiver<Line>) -> Result<(), CliError> {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        match lines.recv_deadline(deadline) {
            Ok(Line::Event(side, event)) => {
                show_event(side, &event)?;
                if side == Side::Backup && event["event"] == "started" {
                    return Ok(());
                }
            }
            Ok(Line::Message(side, text)) => print_message(side, &text)?,
            Ok(Line::Console(..) | Line::Client(_) | Line::ClientDone) => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(CliError::Usage("the backup never started".into()));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(CliError::Usage("the backup ended before it started".into()));
            }
        }
    }
}

/// Shows the pair until both have ended (with --net: until the client is
/// done, when the demo stops the new primary); kills the primary on time.
fn show(
    args: &DemoArgs,
    pair: &mut Pair,
    lines: &Receiver<Line>,
    taken_over: &Sender<()>,
) -> Result<u8, CliError> {
    let Pair { primary, backup } = pair;
    let mut kill_at: Option<Instant> = None;
    let mut killed: Option<Instant> = None;
    let mut first_live_output: Option<Duration> = None;
    let mut backup_live = false;
    // Until every pipe closes, that is until both processes have ended.
    loop {
        match lines.recv_timeout(Duration::from_millis(20)) {
            Ok(Line::Console(Side::Primary, text)) => out(&row(&text, ""))?,
            Ok(Line::Console(Side::Backup, text)) => {
                if let (Some(at), None) = (killed, first_live_output) {
                    first_live_output = Some(at.elapsed());
                }
                out(&row("", &text))?;
            }
            Ok(Line::Client(text)) => out(&format!("client ▸ {text}"))?,
            // The server never ends by itself: the demo ends with the client.
            Ok(Line::ClientDone) => {
                stop(primary);
                stop(backup);
            }
            Ok(Line::Event(side, event)) => {
                let name = event["event"].as_str().unwrap_or_default();
                if name == "paired" && side == Side::Primary && kill_at.is_none() {
                    kill_at = Some(Instant::now() + Duration::from_millis(args.kill_after_ms));
                }
                if name == "live" {
                    backup_live = true;
                    let _ = taken_over.try_send(());
                }
                show_event(side, &event)?;
            }
            Ok(Line::Message(side, text)) => print_message(side, &text)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }

        let due = kill_at.is_some_and(|at| Instant::now() >= at);
        if killed.is_none() && due && primary.try_wait().map_err(CliError::Host)?.is_none() {
            let _ = primary.kill();
            killed = Some(Instant::now());
            print_status(Side::Primary, "[killed with SIGKILL]")?;
            print_status(Side::Backup, "[replaying what it received]")?;
        }
    }
    let primary_status = primary.wait().map_err(CliError::Host)?;
    let backup_status = backup.wait().map_err(CliError::Host)?;
    out("")?;
    match (killed, backup_live) {
        (Some(_), true) if args.net => {
            out("ftvm demo: the backup took over; the client's connection carried on through it.")?
        }
        (Some(_), true) => out(&format!(
            "ftvm demo: the backup took over and the guest ran to its end; first output of the new primary {} ms after the SIGKILL.",
            first_live_output.map_or_else(|| "-".into(), |d| d.as_millis().to_string())
        ))?,
        (Some(_), false) => out(&format!(
            "ftvm demo: the primary was killed but the backup did not go live ({backup_status})."
        ))?,
        (None, _) if args.net => out(&format!(
            "ftvm demo: the pair ended before the primary was killed ({primary_status})."
        ))?,
        (None, _) => out(&format!(
            "ftvm demo: the guest ended before the primary was killed ({primary_status}); try a larger --ticks."
        ))?,
    }
    if args.net {
        // SIGTERM ended the server: that is the demo's end, not a failure.
        return Ok(if killed.is_some() && backup_live {
            0
        } else {
            1
        });
    }
    let side = if killed.is_some() {
        backup_status
    } else {
        primary_status
    };
    Ok(side
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1))
}

/// Asks a process to stop (SIGTERM), once.
fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: signals our own child, which has not been reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
}

/// Shows an event as one status line of its side's column (several
/// events make several lines, none is split).
fn show_event(side: Side, event: &Value) -> Result<(), CliError> {
    let number = |field: &str| event[field].as_u64().unwrap_or_default();
    let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
    match event["event"].as_str().unwrap_or_default() {
        "started" => print_status(side, &format!("started, pid {}", number("pid"))),
        "paired" => print_status(side, &format!("paired with {}", text("peer"))),
        "progress" if side == Side::Primary => print_status(
            side,
            &format!(
                "lag {} ms, log {} KiB, {} held",
                number("lag_ms"),
                number("log_bytes") >> 10,
                number("held_outputs")
            ),
        ),
        "peer_lost" => print_status(side, &format!("lost its peer: {}", text("reason"))),
        "live" => {
            print_status(side, &format!("live from exit {}", number("exit")))?;
            print_status(
                side,
                &format!(
                    "detect {} ms, drain {} ms, go live {} ms",
                    number("detection_ms"),
                    number("drain_ms"),
                    number("golive_ms")
                ),
            )
        }
        "diverged" => print_status(side, &format!("diverged at exit {}", number("exit"))),
        "ended" => print_status(side, &format!("ended with status {}", number("status"))),
        _ => Ok(()),
    }
}

/// A status line in `side`'s column, cut to fit it: it never wraps.
fn print_status(side: Side, text: &str) -> Result<(), CliError> {
    let shown = fit(&format!("· {text}"), COLUMN);
    match side {
        Side::Primary => out(&row(&shown, "")),
        Side::Backup => out(&row("", &shown)),
    }
}

/// An error a process wrote for people, on a line of its own across both
/// columns (cut to their width); its other messages, and its warnings, say
/// what its events say.
fn print_message(side: Side, text: &str) -> Result<(), CliError> {
    if !text.starts_with("ftvm: error:") && !text.contains(" ERROR ") {
        return Ok(());
    }
    let line = format!("{} ▸ {}", side.name(), text.trim());
    out(&fit(&line, 2 * COLUMN + 3))
}

/// `text`, cut with an ellipsis to at most `width` characters.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// Writes a line of the view; a closed stdout ends the demo.
fn out(line: &str) -> Result<(), CliError> {
    writeln!(std::io::stdout().lock(), "{line}").map_err(CliError::Console)
}

fn row(left: &str, right: &str) -> String {
    let left: String = left.chars().take(COLUMN).collect();
    let pad = COLUMN - left.chars().count();
    format!("{left}{} │ {right}", " ".repeat(pad))
}
