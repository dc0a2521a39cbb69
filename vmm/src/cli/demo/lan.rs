//! The network of `ftvm demo --net`: a namespace of its own holding a
//! bridge (the LAN, where this demo's client is 10.0.0.1) and a TAP device
//! for each side (a host of its own each, in a real deployment); and the
//! client, a TCP connection to the guest's Redis server issuing numbered
//! SETs.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::Line;
use crate::cli::error::CliError;

/// The guest's address and Redis port, on the LAN.
pub const GUEST_IP: &str = "10.0.0.2";
const REDIS: &str = "10.0.0.2:6379";
/// The TAP device of side `side` (0 the primary, 1 the backup, then the
/// standbys).
pub fn tap(side: usize) -> String {
    format!("tap-{side}")
}
/// How long one SET may take: a takeover, and TCP's retransmission.
const PATIENCE: Duration = Duration::from_secs(30);
/// SETs between two lines of the client's view, when nothing happens.
const SHOW_EVERY: u64 = 10;
/// A SET slower than this is shown: it waited for something.
const SLOW: Duration = Duration::from_millis(100);

/// The demo's network namespace, removed with everything in it on drop.
pub struct Lan {
    pub namespace: String,
}

impl Lan {
    /// The namespace, its bridge and a TAP device for each of `sides`.
    pub fn create(sides: usize) -> Result<Self, CliError> {
        let lan = Self {
            namespace: format!("ftvmdemo{}", std::process::id()),
        };
        let ns = lan.namespace.as_str();
        let mut steps: Vec<Vec<String>> = [
            vec!["netns", "add", ns],
            vec!["-n", ns, "link", "set", "lo", "up"],
            vec!["-n", ns, "link", "add", "br0", "type", "bridge"],
            vec!["-n", ns, "addr", "add", "10.0.0.1/24", "dev", "br0"],
            vec!["-n", ns, "link", "set", "br0", "up"],
        ]
        .into_iter()
        .map(|step| step.into_iter().map(String::from).collect())
        .collect();
        for side in 0..sides {
            let tap = tap(side);
            steps.push(
                ["-n", ns, "tuntap", "add", "dev", &tap, "mode", "tap"]
                    .map(String::from)
                    .to_vec(),
            );
            steps.push(
                ["-n", ns, "link", "set", &tap, "master", "br0", "up"]
                    .map(String::from)
                    .to_vec(),
            );
        }
        for step in steps {
            let output = Command::new("ip")
                .args(&step)
                .stdin(Stdio::null())
                .output()
                .map_err(|error| {
                    CliError::Usage(format!("ftvm demo --net needs iproute2's `ip`: {error}"))
                })?;
            if !output.status.success() {
                return Err(CliError::Usage(format!(
                    "ftvm demo --net needs root to make its network (`ip {}`: {})",
                    step.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
        }
        Ok(lan)
    }

    /// `command`, run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Starts the client: numbered SETs on one connection until
    /// `taken_over` says the last takeover came, `after_takeover` more,
    /// then every key read back. Its view goes to `lines`.
    pub fn start_client(
        &self,
        lines: Sender<Line>,
        after_takeover: u64,
        taken_over: crossbeam_channel::Receiver<()>,
    ) -> Result<thread::JoinHandle<bool>, CliError> {
        let netns =
            File::open(format!("/var/run/netns/{}", self.namespace)).map_err(CliError::Host)?;
        thread::Builder::new()
            .name("demo-client".into())
            .spawn(move || {
                // SAFETY: moves only this thread into the demo's namespace.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let error = std::io::Error::last_os_error();
                    let _ = lines.send(Line::Client(format!("cannot enter the LAN: {error}")));
                    return false;
                }
                let say = |text: String| lines.send(Line::Client(text)).is_ok();
                let connected = || {
                    let _ = lines.send(Line::ClientConnected);
                };
                let served = match run_client(&say, &connected, after_takeover, &taken_over) {
                    Ok(()) => true,
                    Err(error) => {
                        say(format!("connection failed: {error}"));
                        false
                    }
                };
                let _ = lines.send(Line::ClientDone);
                served
            })
            .map_err(CliError::Host)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.namespace])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One connection's view of the takeover.
fn run_client(
    say: &dyn Fn(String) -> bool,
    connected: &dyn Fn(),
    after_takeover: u64,
    taken_over: &crossbeam_channel::Receiver<()>,
) -> std::io::Result<()> {
    let stream = connect()?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let local = stream.local_addr()?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    say(format!(
        "connected from {local} to {REDIS}: one connection for everything below"
    ));
    connected();
    let mut call = |command: &str| -> std::io::Result<(String, Duration)> {
        let asked = Instant::now();
        writer.write_all(format!("{command}\r\n").as_bytes())?;
        let mut reply = String::new();
        reader.read_line(&mut reply)?;
        if let Some(len) = reply
            .strip_prefix('$')
            .and_then(|l| l.trim().parse::<usize>().ok())
        {
            let mut value = String::new();
            reader.read_line(&mut value)?;
            reply = value;
            reply.truncate(len);
        }
        Ok((reply.trim_end().to_owned(), asked.elapsed()))
    };
    let mut acked = 0u64;
    let mut stop_at: Option<u64> = None;
    let mut longest = Duration::ZERO;
    while stop_at.is_none_or(|stop| acked < stop) {
        let (reply, took) = call(&format!("SET key{acked} value{acked}"))?;
        if reply != "+OK" {
            say(format!("SET key{acked} failed: {reply}"));
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        longest = longest.max(took);
        if stop_at.is_none() && taken_over.try_recv().is_ok() {
            stop_at = Some(acked + after_takeover);
        }
        if acked.is_multiple_of(SHOW_EVERY) || took >= SLOW {
            say(format!(
                "SET key{acked} value{acked} → OK in {} ms",
                took.as_millis()
            ));
        }
        acked += 1;
    }
    let mut missing = 0;
    for i in 0..acked {
        let (value, _) = call(&format!("GET key{i}"))?;
        if value != format!("value{i}") {
            missing += 1;
        }
    }
    say(format!(
        "{acked} SETs acknowledged on one connection, longest wait {} ms; read back: {} of {acked} keys{}",
        longest.as_millis(),
        acked - missing,
        if missing == 0 {
            ", none lost"
        } else {
            " — KEYS LOST"
        }
    ));
    if missing == 0 {
        Ok(())
    } else {
        Err(std::io::ErrorKind::InvalidData.into())
    }
}

/// Connects once the guest listens (it boots after the pair forms).
fn connect() -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect_timeout(
            &REDIS.parse().expect("a socket address"),
            Duration::from_secs(1),
        ) {
            Ok(stream) => return Ok(stream),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}
