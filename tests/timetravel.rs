//! Time-travel debugging through the real binary: `--until-exit` and
//! `--from-exit`, and Debian's gdb in batch mode against `ftvm replay --gdb`
//! on a trace of `ticker`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{Finished, TIMEOUT, finish, ftvm, run, scratch_dir};
use ft_logging::Record;
use object::{Object, ObjectSymbol};
use replay::{TraceReader, TraceWriter};

const GDB_PROTOCOL: i32 = 110;

/// Records `ticker` with no input.
fn record_ticker(dir: &Path, cmdline: &str) -> PathBuf {
    record_ticker_with(dir, "ticker.trace", cmdline, &[])
}

/// Records `ticker` into `dir/name` with more `record` options.
fn record_ticker_with(dir: &Path, name: &str, cmdline: &str, options: &[&str]) -> PathBuf {
    let trace = dir.join(name);
    let mut args = vec!["record", "--trace", trace.to_str().unwrap()];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--kernel", "ticker", "--cmdline", cmdline]);
    let out = run(&args);
    assert_eq!(out.code(), 0, "{out:#?}");
    trace
}

/// The exits a trace holds, as `trace inspect` says.
fn trace_exits(trace: &Path) -> u64 {
    run(&["trace", "inspect", trace.to_str().unwrap()])
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("exits"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The kernel a trace carries, written next to it for gdb.
fn trace_kernel(trace: &Path) -> PathBuf {
    let kernel = trace.with_extension("elf");
    let out = run(&[
        "trace",
        "kernel",
        trace.to_str().unwrap(),
        kernel.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{out:#?}");
    kernel
}

/// The address of the first symbol of `kernel` whose name contains `part`.
fn symbol(kernel: &Path, part: &str) -> u64 {
    let bytes = std::fs::read(kernel).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    file.symbols()
        .find(|symbol| symbol.name().is_ok_and(|name| name.contains(part)))
        .unwrap_or_else(|| panic!("no symbol like {part} in {}", kernel.display()))
        .address()
}

/// A port no other test of this binary was given. Two tests given one port
/// would share one ftvm: the second's bind fails, and its client waits in
/// the first's accept queue until that ftvm stops listening and resets it.
fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    // Probes stay bound until a new port turns up, so none comes twice.
    let mut probes = Vec::new();
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
        probes.push(probe);
    }
}

/// `ftvm replay TRACE --gdb` on a free port.
fn start_debuggee(trace: &Path) -> (Child, u16) {
    let port = free_port();
    let child = ftvm()
        .args(["replay", trace.to_str().unwrap(), "--gdb"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ftvm");
    (child, port)
}

/// What a gdb session printed, and how ftvm ended.
#[derive(Debug)]
struct Session {
    gdb: String,
    ftvm: Finished,
}

impl Session {
    /// The values printed by `printf "NAME %lu\n"` lines, in order.
    fn values(&self, name: &str) -> Vec<u64> {
        let prefix = format!("{name} ");
        self.gdb
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|value| {
                let value = value.trim();
                match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
                    None => value.parse().unwrap(),
                }
            })
            .collect()
    }

    /// `monitor when`'s exits, in order.
    fn exits(&self) -> Vec<u64> {
        self.gdb
            .lines()
            .filter_map(|line| line.strip_prefix("exit "))
            .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
            .collect()
    }
}

/// Runs gdb in batch mode against a replay of `trace`, with each line of
/// `commands` as an `-ex` (so one that fails does not stop the rest).
/// `set language c` keeps the casts below valid in Rust frames.
fn debug(trace: &Path, commands: &str) -> Session {
    let kernel = trace_kernel(trace);
    let (child, port) = start_debuggee(trace);
    let gdb_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ftvm.gdb");
    let setup = [
        "set pagination off".to_owned(),
        "set confirm off".to_owned(),
        "set language c".to_owned(),
        format!("source {}", gdb_script.display()),
        format!("target remote 127.0.0.1:{port}"),
    ];
    let mut gdb = Command::new("gdb");
    gdb.args(["-nx", "-batch"]);
    for command in setup.iter().map(String::as_str).chain(commands.lines()) {
        gdb.arg("-ex").arg(command);
    }
    let gdb = gdb
        .arg(&kernel)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gdb (the tests need Debian's gdb)");
    let gdb = finish(gdb, TIMEOUT);
    let ftvm = finish(child, TIMEOUT);
    Session {
        gdb: format!("{}{}", gdb.stdout, gdb.stderr),
        ftvm,
    }
}

#[test]
fn until_and_from_an_exit_split_the_output_exactly() {
    let dir = scratch_dir("tt-split");
    let plain = record_ticker(&dir, "ticks=8 hz=40");
    let checkpointed = record_ticker_with(
        &dir,
        "checkpointed.trace",
        "ticks=8 hz=40",
        &["--checkpoint-every", "0.05"],
    );
    for trace in [&plain, &checkpointed] {
        let full = run(&["replay", trace.to_str().unwrap()]);
        assert_eq!(full.code(), 0, "{full:#?}");
        let exits = trace_exits(trace);
        for n in [0, 1, 2, exits / 3, exits / 2, exits - 1, exits, exits + 5] {
            let n = n.to_string();
            let until = run(&["replay", trace.to_str().unwrap(), "--until-exit", &n]);
            let from = run(&[
                "replay",
                trace.to_str().unwrap(),
                "--from-exit",
                &n,
                "--verify",
            ]);
            assert_eq!(until.code(), 0, "{until:#?}");
            assert_eq!(from.code(), 0, "{from:#?}");
            assert_eq!(
                format!("{}{}", until.stdout, from.stdout),
                full.stdout,
                "--until-exit {n} then --from-exit {n} of {}",
                trace.display()
            );
            if n == (exits / 2).to_string() {
                assert!(!until.stdout.is_empty() && !from.stdout.is_empty());
            }
        }
    }
    let bad = run(&[
        "replay",
        plain.to_str().unwrap(),
        "--from-exit",
        "10",
        "--until-exit",
        "5",
    ]);
    bad.assert_refused(125, "--until-exit 5 is before --from-exit 10");
}

#[test]
fn an_address_gdb_cannot_be_served_on_is_a_usage_error() {
    let dir = scratch_dir("tt-gdb-address");
    let trace = record_ticker(&dir, "ticks=2 hz=40");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    // In use, not an address, and not this host's.
    for address in [in_use.as_str(), "nowhere", "192.0.2.1:1234"] {
        let out = run(&["replay", trace.to_str().unwrap(), "--gdb", address]);
        out.assert_refused(125, &format!("cannot listen for gdb on {address}"));
        assert_eq!(out.stdout, "", "{out:#?}");
    }
}

#[test]
fn checkpoints_are_listed_and_a_damaged_one_is_refused_before_anything_runs() {
    let dir = scratch_dir("tt-checkpoints");
    let trace = record_ticker_with(
        &dir,
        "ticker.trace",
        "ticks=6 hz=40",
        &["--checkpoint-every", "0.05"],
    );
    let inspected = run(&["trace", "inspect", trace.to_str().unwrap()]);
    assert_eq!(inspected.code(), 0, "{inspected:#?}");
    let listed: Vec<&str> = inspected
        .stdout
        .lines()
        .filter(|line| line.trim_start().starts_with("after exit"))
        .collect();
    assert!(listed.len() >= 2, "{inspected:#?}");
    assert!(listed[0].contains("whole"), "{inspected:#?}");
    assert!(
        listed[1].contains("changed since the last"),
        "{inspected:#?}"
    );

    // A byte flipped inside the second checkpoint: its record's checksum.
    let summary = replay::inspect(&trace).unwrap();
    let second = summary.checkpoints[1];
    let mut bytes = std::fs::read(&trace).unwrap();
    bytes[second.start.offset as usize + 40] ^= 0x10;
    let flipped = dir.join("flipped.trace");
    std::fs::write(&flipped, &bytes).unwrap();
    let out = run(&["replay", flipped.to_str().unwrap()]);
    out.assert_refused(119, "checksum");
    assert!(out.stdout.is_empty(), "{out:#?}");

    // A checkpoint whose machine state is damaged inside a valid record.
    let damaged = dir.join("damaged.trace");
    let mut reader = TraceReader::open(&trace).unwrap();
    let mut writer = TraceWriter::create(&damaged, reader.header()).unwrap();
    while let Some(mut record) = reader.next_record().unwrap() {
        if let Record::Checkpoint { machine, exit, .. } = &mut record
            && *exit == second.exit
        {
            let middle = machine.len() / 2;
            machine[middle] ^= 0x01;
        }
        writer.write(&record).unwrap();
    }
    writer.finish().unwrap();
    for args in [vec!["replay"], vec!["replay", "--from-exit", "100"]] {
        let mut args = args.clone();
        args.push(damaged.to_str().unwrap());
        let out = run(&args);
        out.assert_refused(
            119,
            &format!("the trace's checkpoint after exit {}", second.exit),
        );
        assert!(out.stdout.is_empty(), "{out:#?}");
    }
}

/// A trace of ticker, where its timer handler and tick counter are, and
/// gdb commands printing the counter (`ticks N`) and the PC (`pc N`).
struct Ticker {
    trace: PathBuf,
    handler: u64,
    ticks: u64,
    read: String,
}

fn ticker(test: &str, cmdline: &str) -> Ticker {
    let trace = record_ticker(&scratch_dir(test), cmdline);
    let kernel = trace_kernel(&trace);
    let ticks = symbol(&kernel, "6ticker5TICKS");
    Ticker {
        handler: symbol(&kernel, "8on_timer"),
        ticks,
        read: format!(
            "printf \"ticks %lu\\n\", *(unsigned long *){ticks:#x}\nprintf \"pc %#lx\\n\", $pc"
        ),
        trace,
    }
}

#[test]
fn breakpoints_continue_and_reverse_continue_and_step_back() {
    let Ticker {
        trace,
        handler,
        read,
        ..
    } = ticker("tt-break", "ticks=6 hz=40");
    let session = debug(
        &trace,
        &format!(
            "hbreak *{handler:#x}\ncontinue\ncontinue\ncontinue\n{read}\nreverse-continue\n{read}\n\
             stepi\n{read}\nstepi\n{read}\nreverse-stepi\n{read}\nkill"
        ),
    );
    let ticks = session.values("ticks");
    let pcs = session.values("pc");
    assert_eq!(ticks.len(), 5, "{session:#?}");
    // The handler increments the counter: at its third entry it is 2.
    assert_eq!((ticks[0], pcs[0]), (2, handler), "{session:#?}");
    assert_eq!((ticks[1], pcs[1]), (1, handler), "{session:#?}");
    // Two steps on, one back: at the second instruction, as it was there.
    assert_ne!(pcs[2], handler, "{session:#?}");
    assert_eq!((ticks[4], pcs[4]), (ticks[2], pcs[2]), "{session:#?}");
    assert_ne!(pcs[3], pcs[2], "{session:#?}");
    assert!(
        session.gdb.contains("Breakpoint 1,"),
        "gdb reports hardware breakpoints: {session:#?}"
    );
    assert_eq!(session.ftvm.code(), 0, "{session:#?}");
    assert!(
        session.ftvm.stderr.contains("gdb killed the replay"),
        "{session:#?}"
    );
}

#[test]
fn a_watchpoint_stops_where_the_counter_is_written_and_rwatch_is_refused() {
    let Ticker {
        trace,
        handler,
        ticks,
        read,
    } = ticker("tt-watch", "ticks=4 hz=40");
    let session = debug(
        &trace,
        &format!(
            "watch *(unsigned long *){ticks:#x}\ncontinue\n{read}\ncontinue\n{read}\n\
             reverse-continue\n{read}\ndelete\nrwatch *(unsigned long *){ticks:#x}\ncontinue\nkill"
        ),
    );
    let ticks = session.values("ticks");
    let pcs = session.values("pc");
    assert_eq!(ticks.len(), 3, "{session:#?}");
    // Just after the handler's first instruction, the increment.
    assert_eq!((ticks[0], ticks[1]), (1, 2), "{session:#?}");
    assert!(pcs[0] > handler && pcs[0] < handler + 16, "{session:#?}");
    assert_eq!(pcs[1], pcs[0], "{session:#?}");
    // Backwards, the write is shown from just before it.
    assert_eq!((ticks[2], pcs[2]), (1, handler), "{session:#?}");
    assert!(session.gdb.contains("Old value = 0"), "{session:#?}");
    assert!(
        session
            .gdb
            .contains("does not support this type of hardware watchpoint")
            || session.gdb.contains("Could not insert"),
        "rwatch is refused: {session:#?}"
    );
    assert!(
        session.ftvm.stderr.contains("read watchpoints"),
        "{session:#?}"
    );
}

/// The general registers `info registers` shows, by name.
fn registers(text: &str) -> HashMap<String, String> {
    const NAMES: [&str; 18] = [
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15", "rip", "eflags",
    ];
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            NAMES
                .contains(&name)
                .then(|| (name.to_owned(), words.next().unwrap_or("").to_owned()))
        })
        .collect()
}

#[test]
fn goto_late_then_early_gives_the_registers_of_a_fresh_replay_there() {
    let dir = scratch_dir("tt-goto");
    let trace = record_ticker(&dir, "ticks=6 hz=40");
    let roundtrip = debug(
        &trace,
        "goto 400\ninfo registers\ngoto 120\necho ---\\n\ninfo registers\nkill",
    );
    let fresh = debug(&trace, "goto 120\necho ---\\n\ninfo registers\nkill");
    let after = |session: &Session| {
        let text = session.gdb.split("---").nth(1).unwrap_or("").to_owned();
        registers(&text)
    };
    let (back, there) = (after(&roundtrip), after(&fresh));
    assert_eq!(back.len(), 18, "{roundtrip:#?}");
    assert_eq!(back, there, "{roundtrip:#?}\n{fresh:#?}");
    let late = registers(roundtrip.gdb.split("---").next().unwrap());
    assert_eq!(late.len(), 18, "{roundtrip:#?}");
    assert_ne!(late, back, "exit 400 differs from 120");
    assert_eq!(roundtrip.exits(), vec![400, 120], "{roundtrip:#?}");
}

#[test]
fn stepping_across_an_interrupt_then_continuing_ends_as_recorded() {
    let dir = scratch_dir("tt-irq");
    let trace = record_ticker(&dir, "ticks=5 hz=40");
    let kernel = trace_kernel(&trace);
    let handler = symbol(&kernel, "8on_timer");
    let stub = symbol(&kernel, "irq_stub_0");
    // Where the first timer interrupt is taken: just after the exit it
    // was injected at.
    let first = debug(
        &trace,
        &format!("hbreak *{handler:#x}\ncontinue\nmonitor when\nkill"),
    );
    let exit = first.exits()[0];
    let session = debug(
        &trace,
        &format!(
            "monitor goto {exit}\nmaintenance flush register-cache\nstepi\nprintf \"pc %#lx\\n\", $pc\n\
             stepi\nstepi\ncontinue"
        ),
    );
    assert_eq!(session.values("pc"), vec![stub], "{session:#?}");
    // A replay under gdb verifies every digest, the end's state included.
    assert!(session.gdb.contains("exited normally"), "{session:#?}");
    assert_eq!(session.ftvm.code(), 0, "{session:#?}");
    let plain = run(&["replay", trace.to_str().unwrap(), "--verify"]);
    assert_eq!(plain.code(), 0, "{plain:#?}");
    assert_eq!(session.ftvm.stdout, plain.stdout);
}

#[test]
fn detach_runs_the_replay_on_and_the_end_passes_the_status_to_gdb() {
    let dir = scratch_dir("tt-end");
    let trace = dir.join("hello.trace");
    let out = run(&[
        "record",
        "--trace",
        trace.to_str().unwrap(),
        "--kernel",
        "hello",
        "--cmdline",
        "exit=7",
    ]);
    assert_eq!(out.code(), 7, "{out:#?}");
    let ended = debug(&trace, "continue");
    assert!(ended.gdb.contains("exited with code 07"), "{ended:#?}");
    assert_eq!(ended.ftvm.code(), 7, "{ended:#?}");
    let detached = debug(&trace, "stepi\ndetach");
    assert_eq!(detached.ftvm.code(), 7, "{detached:#?}");
    assert_eq!(detached.ftvm.stdout, out.stdout);
}

/// Connects to a debuggee as a bare client, retrying until it listens.
fn connect(port: u16) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(_) if start.elapsed() < TIMEOUT => thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("ftvm never listened on {port}: {error}"),
        }
    }
}

#[test]
fn garbage_from_the_client_ends_the_connection_with_an_error() {
    let dir = scratch_dir("tt-garbage");
    let trace = record_ticker(&dir, "ticks=2 hz=40");
    let (child, port) = start_debuggee(&trace);
    let mut client = connect(port);
    client
        .write_all(b"this is not the remote protocol\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let out = finish(child, TIMEOUT);
    let stderr: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(out.code(), GDB_PROTOCOL, "{out:#?}");
    assert!(
        stderr
            .last()
            .unwrap()
            .starts_with("ftvm: error: the gdb client broke"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

#[test]
fn a_client_gone_mid_command_ends_the_replay_with_a_note() {
    let dir = scratch_dir("tt-gone");
    let trace = record_ticker(&dir, "ticks=2 hz=40");
    let (child, port) = start_debuggee(&trace);
    let mut client = connect(port);
    client.write_all(b"+$qSupported:multiprocess+;sw").unwrap();
    drop(client);
    let out = finish(child, TIMEOUT);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stderr.contains("gdb went away"), "{out:#?}");
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

#[test]
fn the_past_cannot_be_changed_and_only_ram_can_be_read() {
    let dir = scratch_dir("tt-readonly");
    let trace = record_ticker(&dir, "ticks=2 hz=40");
    let kernel = trace_kernel(&trace);
    let ticks = symbol(&kernel, "6ticker5TICKS");
    let handler = symbol(&kernel, "8on_timer");
    let session = debug(
        &trace,
        &format!(
            "x/4xb 0x100000\nx/x 0xd0000000\nx/x 0x40000000\n\
             set var *(unsigned long *){ticks:#x} = 5\nkill"
        ),
    );
    // RAM reads; MMIO and beyond-RAM answer an error; writes are refused.
    assert!(session.gdb.contains("0x100000"), "{session:#?}");
    assert!(
        session
            .gdb
            .contains("Cannot access memory at address 0xd0000000"),
        "{session:#?}"
    );
    assert!(
        session
            .gdb
            .contains("Cannot access memory at address 0x40000000"),
        "{session:#?}"
    );
    let registers = debug(&trace, "set $rax = 1\nkill");
    assert!(
        registers.gdb.contains("Could not write register")
            || registers.gdb.contains("Could not fetch register"),
        "{registers:#?}"
    );
    // Four hardware breakpoints at most; a fifth is an error, never an int3.
    let five: String = (0..5)
        .map(|i| format!("break *{:#x}\n", handler + i))
        .collect();
    let full = debug(&trace, &format!("{five}continue\nkill"));
    assert!(
        full.gdb.contains("Cannot insert breakpoint") || full.gdb.contains("Could not insert"),
        "{full:#?}"
    );
    assert!(
        full.ftvm.stderr.contains("hardware breakpoints are in use"),
        "{full:#?}"
    );
}

/// A remote-protocol packet with its checksum.
fn packet(body: &str) -> Vec<u8> {
    let sum = body.bytes().fold(0u8, |sum, byte| sum.wrapping_add(byte));
    format!("${body}#{sum:02x}").into_bytes()
}

/// Reads until `needle` arrives. When the read fails or ftvm closes the
/// connection first, the test fails with what `debuggee` printed and how it
/// ended (stopping it if it still runs).
fn read_until(client: &mut TcpStream, needle: &[u8], debuggee: &mut Option<Child>) -> Vec<u8> {
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !seen.windows(needle.len()).any(|window| window == needle) {
        let failure = match client.read(&mut buf) {
            Ok(0) => "ftvm closed the connection".to_owned(),
            Ok(read) => {
                seen.extend_from_slice(&buf[..read]);
                continue;
            }
            Err(error) => format!("read from ftvm: {error}"),
        };
        let mut child = debuggee.take().expect("a debuggee to report on");
        let _ = child.kill();
        let out = finish(child, TIMEOUT);
        panic!(
            "{failure} before {:?}; got {:?}; ftvm: {out:#?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&seen)
        );
    }
    seen
}

#[test]
fn ctrl_c_from_gdb_stops_a_running_replay() {
    let dir = scratch_dir("tt-ctrl-c");
    let trace = record_ticker(&dir, "ticks=400 hz=200");
    let (child, port) = start_debuggee(&trace);
    let mut debuggee = Some(child);
    let mut client = connect(port);
    client.write_all(&packet("c")).unwrap();
    client.write_all(&[0x03]).unwrap();
    // Stopped by SIGINT (2).
    read_until(&mut client, b"$S02", &mut debuggee);
    client.write_all(&packet("qRcmd,7768656e")).unwrap(); // monitor when
    let when = read_until(&mut client, b"$OK", &mut debuggee);
    let when = String::from_utf8_lossy(&when).into_owned();
    client.write_all(&packet("k")).unwrap();
    let out = finish(debuggee.take().unwrap(), TIMEOUT);
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(
        !out.stdout.contains("tick 400"),
        "the replay ran to its end: {out:#?}"
    );
    assert!(when.contains('O'), "{when}");
}

#[test]
fn a_signal_stops_a_replay_waiting_for_gdb_or_for_its_commands() {
    let dir = scratch_dir("tt-signal");
    let trace = record_ticker(&dir, "ticks=2 hz=40");
    let (waiting, _) = start_debuggee(&trace);
    let (serving, port) = start_debuggee(&trace);
    let _client = connect(port);
    thread::sleep(Duration::from_millis(500));
    for child in [&waiting, &serving] {
        // SAFETY: kill has no memory effects; the pid is our child's.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    }
    for child in [waiting, serving] {
        let out = finish(child, TIMEOUT);
        assert_eq!(out.code(), 130, "{out:#?}");
        assert!(
            out.stderr.contains("replay interrupted (SIGINT)"),
            "{out:#?}"
        );
    }
}

#[test]
fn going_back_and_forth_ten_times_ends_as_a_plain_replay() {
    let dir = scratch_dir("tt-back-and-forth");
    let trace = record_ticker_with(
        &dir,
        "ticker.trace",
        "ticks=12 hz=40",
        &["--checkpoint-every", "0.05"],
    );
    let kernel = trace_kernel(&trace);
    let handler = symbol(&kernel, "8on_timer");
    let exits = trace_exits(&trace);
    let mut commands = format!("hbreak *{handler:#x}\n");
    for round in 0..10 {
        let early = exits / 10 * (round % 3 + 1);
        commands.push_str(&format!(
            "continue\ncontinue\nreverse-continue\nstepi\nreverse-stepi\nreverse-stepi\n\
             goto {}\ngoto {early}\nstepi\nwhen\n",
            exits - 20
        ));
    }
    commands.push_str("delete\ncontinue");
    let session = debug(&trace, &commands);
    // A replay under gdb verifies every digest, the end's state included.
    assert!(session.gdb.contains("exited normally"), "{session:#?}");
    assert_eq!(session.ftvm.code(), 0, "{session:#?}");
    assert_eq!(session.exits().len(), 30, "{session:#?}");
    let plain = run(&["replay", trace.to_str().unwrap(), "--verify"]);
    assert_eq!(plain.code(), 0, "{plain:#?}");
    // Each console byte printed once, however often the replay went by.
    assert_eq!(session.ftvm.stdout, plain.stdout);
}
