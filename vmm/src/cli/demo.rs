//! `ftvm demo`: a primary and a backup of `ticker` on this machine, shown
//! side by side; the primary is killed and the backup takes over. With
//! `--failures N`, N-1 standbys wait too, and the live side is killed N
//! times, protected again by the next standby after each takeover. With
//! `--net`, the guest is `kvstore` on a network of the demo's own, and a
//! client's connection to it carries on across every takeover. The demo
//! follows each side through its event stream (`--events`), and shows each
//! event as one status line of its column.

mod lan;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

use super::error::CliError;

/// The width of the view: the columns of every side and their separators.
const WIDTH: usize = 134;
/// The widest a column gets (two sides).
const MAX_COLUMN: usize = 44;
/// How long the demo waits for a listening side to start.
const START_PATIENCE: Duration = Duration::from_secs(10);
/// How often the demo looks for new events.
const EVENT_POLL: Duration = Duration::from_millis(20);
/// Ticks per second of the demo's `ticker`.
const HZ: u64 = 20;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Kill the live side (SIGKILL) this long after it is protected (the
    /// first time: after the pair formed).
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    kill_after_ms: u64,
    /// Ticks the guest counts before it ends (at 20 a second); by default
    /// enough for every failure.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    ticks: Option<u64>,
    /// Failures to survive: N+1 sides (a primary, its backup and N-1
    /// standbys), the live side killed N times with re-protection between.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=5))]
    failures: u64,
    /// Run `kvstore` on a network of its own instead (needs root): a client
    /// issues SETs on one TCP connection across every takeover.
    #[arg(long)]
    net: bool,
    /// With --net: SETs the client issues after the last takeover before it
    /// reads every key back and the demo ends.
    #[arg(long, default_value_t = 30, value_name = "N")]
    sets_after: u64,
}

impl DemoArgs {
    /// The guest's ticks: the flag's, or enough for every kill and the
    /// re-protections between them (a second each, with room to spare).
    fn ticks(&self) -> u64 {
        self.ticks.unwrap_or_else(|| {
            let seconds = self.failures * (self.kill_after_ms.div_ceil(1000) + 1) + 3;
            (seconds * HZ).max(120)
        })
    }
}

/// One of the demo's ftvm processes: 0 the primary, 1 the backup, then the
/// standbys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Side(usize);

impl Side {
    const PRIMARY: Side = Side(0);

    fn name(self) -> String {
        match self.0 {
            0 => "primary".into(),
            1 => "backup".into(),
            n => format!("standby {}", n - 1),
        }
    }
}

/// A line from one of the processes, or from the demo's client.
#[derive(Debug)]
enum Line {
    Console(Side, String),
    /// A line a process wrote on stderr: a message for people.
    Message(Side, String),
    /// An event of a process's stream.
    Event(Side, Value),
    Client(String),
    /// The client is connected: the first kill may be scheduled.
    ClientConnected,
    /// The client is done: the servers may stop.
    ClientDone,
}

/// The processes, killed if the demo ends before they do.
struct Sides(Vec<Child>);

impl Drop for Sides {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The files the sides share, removed when the demo ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo's layout: its sides, their addresses and its columns.
struct View {
    sides: usize,
    column: usize,
}

impl View {
    fn new(sides: usize) -> Self {
        let column = ((WIDTH + 3) / sides - 3).min(MAX_COLUMN);
        Self { sides, column }
    }

    /// A line of the view with `text` in `side`'s column (the columns
    /// after it left out).
    fn row(&self, side: Side, text: &str) -> String {
        let mut cells = vec![" ".repeat(self.column); side.0];
        cells.push(text.chars().take(self.column).collect());
        cells.join(" │ ")
    }

    /// The columns' headings and rule.
    fn heading(&self) -> Result<(), CliError> {
        let names: Vec<String> = (0..self.sides)
            .map(|i| {
                let name = Side(i).name().to_uppercase();
                format!("{name:<width$}", width = self.column)
            })
            .collect();
        out(names.join(" │ ").trim_end())?;
        let rules = vec!["─".repeat(self.column); self.sides];
        out(&rules.join(" │ "))
    }

    /// A status line in `side`'s column, cut to fit it: it never wraps.
    fn status(&self, side: Side, text: &str) -> Result<(), CliError> {
        out(&self.row(side, &fit(&format!("· {text}"), self.column)))
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
    let sides = args.failures as usize + 1;
    // With --net the sides run in the demo's namespace, where these ports
    // are free; otherwise on this machine's loopback.
    let lan = args.net.then(|| lan::Lan::create(sides)).transpose()?;
    // Where each side but the primary listens: the backup, the standbys.
    let addresses: Vec<SocketAddr> = (1..sides)
        .map(|i| match &lan {
            Some(_) => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 7000 + i as u16))),
            None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|listener| listener.local_addr())
                .map_err(CliError::Host),
        })
        .collect::<Result<_, _>>()?;
    let standbys = &addresses[1..];
    let disk = scratch.0.join("kv.img");
    if lan.is_some() {
        std::fs::write(&disk, vec![0u8; 4 << 20]).map_err(CliError::Host)?;
    }
    let events = |side: Side| scratch.0.join(format!("side-{}.events", side.0));
    let command = |side: Side| {
        let mut command = match &lan {
            Some(lan) => lan.command(&ftvm),
            None => Command::new(&ftvm),
        };
        match side.0 {
            0 => command.args(["primary", "--backup", &addresses[0].to_string()]),
            1 => command.args(["backup", "--listen", &addresses[0].to_string()]),
            n => command.args([
                "backup",
                "--join",
                "--listen",
                &addresses[n - 1].to_string(),
            ]),
        };
        command
            .arg("--arbiter")
            .arg(&arbiter)
            .arg("--auth-key")
            .arg(&key)
            .arg("--events")
            .arg(events(side));
        // Every side protects itself, once live, with the standbys after it.
        let next: Vec<String> = standbys
            .iter()
            .skip(side.0.saturating_sub(1))
            .map(SocketAddr::to_string)
            .collect();
        if !next.is_empty() {
            command.args(["--reprotect", &next.join(",")]);
        }
        // A standby's kernel, memory and command line come with the guest.
        let guest = side.0 < 2;
        match &lan {
            None if guest => {
                command.args(["--kernel", "ticker", "--cmdline"]);
                command.arg(format!("ticks={} hz={HZ}", args.ticks()));
            }
            None => {}
            Some(_) => {
                if guest {
                    command.args(["--kernel", "kvstore", "--cmdline"]);
                    command.arg(format!("ip={}/24", lan::GUEST_IP));
                }
                command.arg("--disk").arg(&disk);
                command
                    .arg("--net")
                    .arg(format!("tap={}", lan::tap(side.0)));
            }
        }
        command
    };
    let what = if lan.is_some() {
        "`kvstore` (a Redis server) at 10.0.0.2"
    } else {
        "`ticker`"
    };
    let start = if lan.is_some() {
        "the client connects"
    } else {
        "the pair forms"
    };
    let plan = match args.failures {
        1 => format!(
            "the primary is killed (SIGKILL) {} ms after {start}.",
            args.kill_after_ms
        ),
        n => format!(
            "{} wait{}; the live side is killed (SIGKILL) {n} times, {} ms after {start} and {} ms after each re-protection.",
            match n - 1 {
                1 => "a standby".to_string(),
                more => format!("{more} standbys"),
            },
            if n == 2 { "s" } else { "" },
            args.kill_after_ms,
            args.kill_after_ms
        ),
    };
    out(&format!(
        "ftvm demo: {what} under a primary/backup pair on {}; the go-live flag in {};\n{plan}\n",
        addresses[0],
        arbiter.display(),
    ))?;
    let view = View::new(sides);
    view.heading()?;

    let (lines_tx, lines) = crossbeam_channel::unbounded();
    let mut children = Sides(Vec::new());
    // The listening sides first, the primary once they have started.
    for i in (1..sides).rev() {
        let side = Side(i);
        children
            .0
            .push(spawn(command(side), side, &events(side), &lines_tx)?);
        wait_started(&view, &lines, side)?;
    }
    children.0.reverse();
    let primary = spawn(
        command(Side::PRIMARY),
        Side::PRIMARY,
        &events(Side::PRIMARY),
        &lines_tx,
    )?;
    children.0.insert(0, primary);
    let (taken_over_tx, taken_over) = crossbeam_channel::bounded(1);
    let client = match &lan {
        Some(lan) => Some(lan.start_client(lines_tx.clone(), args.sets_after, taken_over)?),
        None => None,
    };
    drop(lines_tx);
    let status = show(args, &view, &mut children, &lines, &taken_over_tx)?;
    match client {
        Some(client) => {
            let served = client.join().unwrap_or(false);
            Ok(if served && status == 0 { 0 } else { 1 })
        }
        None => Ok(status),
    }
}

/// A fresh random key for the sides.
fn write_key(path: &Path) -> Result<(), CliError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|error| CliError::Host(std::io::Error::other(error.to_string())))?;
    std::fs::write(path, key).map_err(CliError::Host)
}

/// Starts a side, forwarding its console, its messages and the events it
/// writes to `events`.
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

/// Waits for `waited`'s `started` event (the primary tries to reach its
/// backup for a while, and a live side its standbys again and again, so
/// neither need listen yet).
fn wait_started(view: &View, lines: &Receiver<Line>, waited: Side) -> Result<(), CliError> {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        match lines.recv_deadline(deadline) {
            Ok(Line::Event(side, event)) => {
                show_event(view, side, &event)?;
                if side == waited && event["event"] == "started" {
                    return Ok(());
                }
            }
            Ok(Line::Message(side, text)) => print_message(view, side, &text)?,
            Ok(Line::Console(..) | Line::Client(_) | Line::ClientConnected | Line::ClientDone) => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(CliError::Usage(format!(
                    "the {} never started",
                    waited.name()
                )));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(CliError::Usage(format!(
                    "the {} ended before it started",
                    waited.name()
                )));
            }
        }
    }
}

/// A takeover and the re-protection after it, for the summary.
#[derive(Debug, Default)]
struct Failure {
    /// The SIGKILL, and the first output of the side that took over.
    killed: Option<Instant>,
    first_output: Option<Duration>,
    /// The `live` event of the side that took over.
    live: Option<Value>,
    /// Its `protected` event, if a standby was left.
    protected: Option<Value>,
}

/// Shows the sides until all have ended (with --net: until the client is
/// done, when the demo stops the live side); kills the live side on time.
fn show(
    args: &DemoArgs,
    view: &View,
    sides: &mut Sides,
    lines: &Receiver<Line>,
    taken_over: &Sender<()>,
) -> Result<u8, CliError> {
    // The live side now, and when it is to be killed.
    let mut live = Side::PRIMARY;
    let mut kill_at: Option<Instant> = None;
    let mut failures: Vec<Failure> = Vec::new();
    let kill_after = Duration::from_millis(args.kill_after_ms);
    // Until every pipe closes, that is until every process has ended.
    loop {
        match lines.recv_timeout(Duration::from_millis(20)) {
            Ok(Line::Console(side, text)) => {
                if let Some(failure) = failures.last_mut()
                    && side == live
                    && failure.first_output.is_none()
                {
                    failure.first_output = failure.killed.map(|at| at.elapsed());
                }
                out(&view.row(side, &text))?;
            }
            Ok(Line::Client(text)) => out(&format!("client ▸ {text}"))?,
            Ok(Line::ClientConnected) if kill_at.is_none() && failures.is_empty() => {
                kill_at = Some(Instant::now() + kill_after);
            }
            Ok(Line::ClientConnected) => {}
            // The server never ends by itself: the demo ends with the client.
            Ok(Line::ClientDone) => sides.0.iter_mut().for_each(stop),
            Ok(Line::Event(side, event)) => {
                let name = event["event"].as_str().unwrap_or_default();
                let more = (failures.len() as u64) < args.failures;
                // Without a client, the first kill counts from the pairing.
                let protected = (name == "paired" && side == Side::PRIMARY && !args.net)
                    || (name == "protected" && side == live);
                if protected && more && kill_at.is_none() {
                    kill_at = Some(Instant::now() + kill_after);
                }
                if name == "protected"
                    && let Some(failure) = failures.last_mut()
                {
                    failure.protected = Some(event.clone());
                }
                if name == "live" {
                    live = side;
                    if let Some(failure) = failures.last_mut() {
                        failure.live = Some(event.clone());
                    }
                    if failures.len() as u64 == args.failures {
                        let _ = taken_over.try_send(());
                    }
                }
                show_event(view, side, &event)?;
            }
            Ok(Line::Message(side, text)) => print_message(view, side, &text)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }

        let due = kill_at.is_some_and(|at| Instant::now() >= at);
        let victim = &mut sides.0[live.0];
        if due && victim.try_wait().map_err(CliError::Host)?.is_none() {
            let _ = victim.kill();
            kill_at = None;
            failures.push(Failure {
                killed: Some(Instant::now()),
                ..Failure::default()
            });
            view.status(live, "[killed with SIGKILL]")?;
            if let Some(next) = (live.0 + 1..view.sides).next() {
                view.status(Side(next), "[replaying what it received]")?;
            }
        }
    }
    let statuses: Vec<ExitStatus> = sides
        .0
        .iter_mut()
        .map(|child| child.wait().map_err(CliError::Host))
        .collect::<Result<_, _>>()?;
    out("")?;
    summarize(args, &failures)?;
    let took_over = failures.iter().filter(|f| f.live.is_some()).count() as u64;
    if args.net {
        // SIGTERM ended the server: that is the demo's end, not a failure.
        return Ok(
            if took_over == args.failures && failures.len() as u64 == args.failures {
                0
            } else {
                1
            },
        );
    }
    Ok(statuses[live.0]
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1))
}

/// What the failures came to: each takeover, and each re-protection after
/// it, side by side.
fn summarize(args: &DemoArgs, failures: &[Failure]) -> Result<(), CliError> {
    let number = |event: &Value, field: &str| event[field].as_u64().unwrap_or_default();
    let taken = failures.iter().filter(|f| f.live.is_some()).count();
    match (failures.len(), taken) {
        (0, _) if args.net => out("ftvm demo: the pair ended before the primary was killed.")?,
        (0, _) => {
            out("ftvm demo: the guest ended before the primary was killed; try a larger --ticks.")?
        }
        (killed, taken) if taken < killed => out(&format!(
            "ftvm demo: the live side was killed {killed} times but only {taken} takeovers followed."
        ))?,
        (1, 1) if args.net => {
            out("ftvm demo: the backup took over; the client's connection carried on through it.")?
        }
        (1, 1) => out(&format!(
            "ftvm demo: the backup took over and the guest ran to its end; first output of the new primary {} ms after the SIGKILL.",
            failures[0]
                .first_output
                .map_or_else(|| "-".into(), |d| d.as_millis().to_string())
        ))?,
        (killed, _) => {
            let carried = if args.net {
                "the client's connection carried on through all of them"
            } else {
                "the guest ran to its end"
            };
            out(&format!(
                "ftvm demo: {killed} failures, {killed} takeovers; {carried}."
            ))?;
        }
    }
    if failures.len() < 2 && failures.iter().all(|f| f.protected.is_none()) {
        return Ok(());
    }
    for (i, failure) in failures.iter().enumerate() {
        let mut line = format!("  failure {}:", i + 1);
        if let Some(live) = &failure.live {
            line.push_str(&format!(
                " taken over in {} ms (detect {}, drain {}, go live {})",
                number(live, "detection_ms") + number(live, "drain_ms") + number(live, "golive_ms"),
                number(live, "detection_ms"),
                number(live, "drain_ms"),
                number(live, "golive_ms")
            ));
        }
        match &failure.protected {
            Some(protected) => line.push_str(&format!(
                "; protected again in {} ms: pause {} µs, {} KiB sent in {} rounds",
                number(protected, "to_protected_ms"),
                number(protected, "pause_us"),
                number(protected, "bytes") >> 10,
                number(protected, "rounds")
            )),
            None if i + 1 == failures.len() => line.push_str("; no standby left"),
            None => {}
        }
        out(&line)?;
    }
    Ok(())
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
fn show_event(view: &View, side: Side, event: &Value) -> Result<(), CliError> {
    let number = |field: &str| event[field].as_u64().unwrap_or_default();
    let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
    let status = |line: &str| view.status(side, line);
    match event["event"].as_str().unwrap_or_default() {
        "started" => status(&format!("started, pid {}", number("pid"))),
        "paired" => status(&format!("paired with {}", text("peer"))),
        "progress" if side == Side::PRIMARY => status(&format!(
            "lag {} ms, log {} KiB, {} held",
            number("lag_ms"),
            number("log_bytes") >> 10,
            number("held_outputs")
        )),
        "peer_lost" => status(&format!("lost its peer: {}", text("reason"))),
        "live" => {
            status(&format!("live from exit {}", number("exit")))?;
            status(&format!(
                "detect {}, drain {}, live {} ms",
                number("detection_ms"),
                number("drain_ms"),
                number("golive_ms")
            ))
        }
        "transfer_started" => status(&format!("transfer to {}", text("peer"))),
        "transfer_failed" => status(&format!("transfer failed: {}", text("reason"))),
        "protected" => {
            status(&format!("protected by {}", text("peer")))?;
            status(&format!(
                "pause {} µs, {} KiB, {} ms",
                number("pause_us"),
                number("bytes") >> 10,
                number("to_protected_ms")
            ))
        }
        "diverged" => status(&format!("diverged at exit {}", number("exit"))),
        "ended" => status(&format!("ended with status {}", number("status"))),
        _ => Ok(()),
    }
}

/// An error a process wrote for people, on a line of its own across the
/// columns (cut to their width); its other messages, and its warnings, say
/// what its events say.
fn print_message(view: &View, side: Side, text: &str) -> Result<(), CliError> {
    if !text.starts_with("ftvm: error:") && !text.contains(" ERROR ") {
        return Ok(());
    }
    let line = format!("{} ▸ {}", side.name(), text.trim());
    out(&fit(&line, view.sides * (view.column + 3) - 3))
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
