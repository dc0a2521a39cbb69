//! `ftvm demo`: a primary and a backup of `ticker` on this machine, shown
//! side by side; the primary is killed and the backup takes over.

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

/// A line from one of the pair's processes.
#[derive(Debug)]
enum Line {
    Console(Side, String),
    Log(Side, String),
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
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map_err(CliError::Host)?;
    let cmdline = format!("ticks={} hz=20", args.ticks);
    let pair = |role: &str, peer_flag: &str| {
        let mut command = Command::new(&ftvm);
        command
            .args([role, peer_flag, &port.to_string(), "--arbiter"])
            .arg(&arbiter)
            .arg("--auth-key")
            .arg(&key)
            .args([
                "--kernel",
                "ticker",
                "--cmdline",
                &cmdline,
                "--log-level",
                "info",
            ]);
        command
    };
    out(&format!(
        "ftvm demo: `ticker` under a primary/backup pair on {port}; the go-live flag in {};\n\
         the primary is killed (SIGKILL) {} ms after the pair forms.\n",
        arbiter.display(),
        args.kill_after_ms
    ))?;
    out(&row("PRIMARY", "BACKUP"))?;
    out(&row(&"─".repeat(COLUMN), &"─".repeat(COLUMN)))?;

    let (lines_tx, lines) = crossbeam_channel::unbounded();
    let mut backup = spawn(pair("backup", "--listen"), Side::Backup, &lines_tx)?;
    if let Err(error) = wait_listening(&lines) {
        let _ = backup.kill();
        let _ = backup.wait();
        return Err(error);
    }
    let primary = spawn(pair("primary", "--backup"), Side::Primary, &lines_tx)?;
    drop(lines_tx);
    show(args, &mut Pair { primary, backup }, &lines)
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
            Ok(Line::Console(..)) => {}
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

/// Shows the pair until both have ended; kills the primary on time.
fn show(args: &DemoArgs, pair: &mut Pair, lines: &Receiver<Line>) -> Result<u8, CliError> {
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
            Ok(Line::Log(side, text)) => {
                if text.contains("paired") && side == Side::Primary && kill_at.is_none() {
                    kill_at = Some(Instant::now() + Duration::from_millis(args.kill_after_ms));
                }
                if text.contains("live from exit") {
                    backup_live = true;
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
        (Some(_), true) => out(&format!(
            "ftvm demo: the backup took over and the guest ran to its end; first output of the new primary {} ms after the SIGKILL.",
            first_live_output.map_or_else(|| "-".into(), |d| d.as_millis().to_string())
        ))?,
        (Some(_), false) => out(&format!(
            "ftvm demo: the primary was killed but the backup did not go live ({backup_status})."
        ))?,
        (None, _) => out(&format!(
            "ftvm demo: the guest ended before the primary was killed ({primary_status}); try a larger --ticks."
        ))?,
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
