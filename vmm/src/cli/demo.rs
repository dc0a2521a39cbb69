//! `ftvm demo`: a primary and a backup of `ticker` on this machine, shown
//! side by side; the primary is killed and the backup takes over. With
//! `--net`, the guest is `kvstore` on a network of the demo's own, and a
//! client's connection to it carries on across the takeover.

mod lan;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::error::CliError;

/// Width of each column of the side-by-side view.
const COLUMN: usize = 44;
/// What the backup says once it listens.
const LISTENING: &str = "waiting for a primary";
/// How long the demo waits for the backup to listen.
const LISTEN_PATIENCE: Duration = Duration::from_secs(10);

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
    Log(Side, String),
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
            .args(guest(side))
            .args(["--log-level", "info"]);
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
    let mut backup = spawn(pair(Side::Backup), Side::Backup, &lines_tx)?;
    if let Err(error) = wait_listening(&lines) {
        let _ = backup.kill();
        let _ = backup.wait();
        return Err(error);
    }
    let primary = spawn(pair(Side::Primary), Side::Primary, &lines_tx)?;
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
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .and_then(|()| std::fs::write(path, key))
        .map_err(CliError::Host)
}

fn spawn(mut command: Command, side: Side, lines: &Sender<Line>) -> Result<Child, CliError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CliError::Host)?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    forward(stdout, lines.clone(), move |line| Line::Console(side, line));
    forward(stderr, lines.clone(), move |line| Line::Log(side, line));
    Ok(child)
}

fn forward(
    pipe: impl Read + Send + 'static,
    lines: Sender<Line>,
    wrap: impl Fn(String) -> Line + Send + 'static,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        while reader.read_until(b'\n', &mut buffer).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
            buffer.clear();
            if lines.send(wrap(line)).is_err() {
                break;
            }
        }
    });
}

/// Waits for the backup to say it listens.
fn wait_listening(lines: &Receiver<Line>) -> Result<(), CliError> {
    let deadline = Instant::now() + LISTEN_PATIENCE;
    loop {
        match lines.recv_deadline(deadline) {
            Ok(Line::Log(Side::Backup, text)) if text.contains(LISTENING) => {
                print_log(Side::Backup, &describe(Side::Backup, &text).unwrap_or(text))?;
                return Ok(());
            }
            Ok(Line::Log(side, text)) => print_log(side, &text)?,
            Ok(Line::Console(..) | Line::Client(_) | Line::ClientDone) => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(CliError::Usage("the backup never started listening".into()));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(CliError::Usage(
                    "the backup ended before it listened".into(),
                ));
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
            Ok(Line::Log(side, text)) => {
                if text.contains("paired") && side == Side::Primary && kill_at.is_none() {
                    kill_at = Some(Instant::now() + Duration::from_millis(args.kill_after_ms));
                }
                if text.contains("live from exit") {
                    backup_live = true;
                    let _ = taken_over.try_send(());
                }
                if let Some(shown) = describe(side, &text) {
                    print_log(side, &shown)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }

        let due = kill_at.is_some_and(|at| Instant::now() >= at);
        if killed.is_none() && due && primary.try_wait().map_err(CliError::Host)?.is_none() {
            let _ = primary.kill();
            killed = Some(Instant::now());
            print_log(Side::Primary, "[killed with SIGKILL]")?;
            print_log(Side::Backup, "[replaying what it received]")?;
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

/// What of a process's log the demo shows: its own messages, warnings, and
/// the primary's periodic state as a short line.
fn describe(side: Side, text: &str) -> Option<String> {
    if let Some(message) = text.strip_prefix("ftvm: ") {
        return Some(
            message
                .strip_prefix(&format!("{}: ", side.name()))
                .unwrap_or(message)
                .into(),
        );
    }
    if text.contains("primary: paired") {
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("?")
                .to_string()
        };
        return Some(format!(
            "[live] lag {} ms, {} records ({} bytes) sent",
            field("lag_ms"),
            field("records"),
            field("bytes")
        ));
    }
    if text.contains(" WARN ") || text.contains(" ERROR ") {
        return Some(
            text.split_once("  ")
                .map_or(text, |(_, rest)| rest)
                .trim()
                .into(),
        );
    }
    None
}

fn print_log(side: Side, text: &str) -> Result<(), CliError> {
    // Long messages wrap within their column.
    let words: Vec<&str> = text.split(' ').collect();
    let mut line = String::new();
    let mut lines = Vec::new();
    for word in words {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > COLUMN {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    for line in lines {
        let shown = format!("· {line}");
        match side {
            Side::Primary => out(&row(&shown, ""))?,
            Side::Backup => out(&row("", &shown))?,
        }
    }
    Ok(())
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
