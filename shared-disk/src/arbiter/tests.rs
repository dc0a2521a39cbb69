//! Tests on real files with real locks. The cross-process tests run this
//! test binary again as contenders or lock holders: the `*_process` tests
//! are ignored in normal runs and act only when started that way.

use std::cell::{Cell, RefCell};
use std::env;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};

use super::*;

/// Long enough for anything that should happen "promptly" on a loaded
/// two-core machine; only a bug makes a test wait this long.
const PROMPTLY: Duration = Duration::from_secs(30);
/// How long a blocked test-and-set is watched to check it stays blocked.
const STAYS_BLOCKED: Duration = Duration::from_millis(500);

const CHILD_DIR: &str = "FTVM_ARBITER_TEST_DIR";
const CHILD_OWNER: &str = "FTVM_ARBITER_TEST_OWNER";
const CHILD_ROUNDS: &str = "FTVM_ARBITER_TEST_ROUNDS";
const CHILD_LOCK: &str = "FTVM_ARBITER_TEST_LOCK";

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn free(generation: u64) -> FlagState {
    FlagState {
        generation,
        owner: None,
    }
}

fn owned(generation: u64, owner: &str) -> FlagState {
    FlagState {
        generation,
        owner: Some(owner.to_owned()),
    }
}

/// A `give_up` that turns true after `wait`.
fn after(wait: Duration) -> impl Fn() -> bool {
    let deadline = Instant::now() + wait;
    move || Instant::now() >= deadline
}

/// Opens `path` as a separate open file description and takes its exclusive
/// lock, as another contender would.
fn hold_lock(path: &Path) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the flag to lock it");
    assert!(
        lock::try_lock(&file, LockKind::Exclusive).expect("lock"),
        "the flag was already locked"
    );
    file
}

/// Runs `test_and_set` on another thread; its answer arrives on the channel.
fn spawn_test_and_set(
    path: &Path,
    generation: u64,
    owner: &'static str,
    give_up: impl Fn() -> bool + Send + 'static,
) -> mpsc::Receiver<Result<Outcome, ArbiterError>> {
    let arbiter = Arbiter::new(path);
    let (answer, answered) = mpsc::channel();
    thread::spawn(move || answer.send(arbiter.test_and_set(generation, owner, &give_up)));
    answered
}

fn assert_still_waiting(answered: &mpsc::Receiver<Result<Outcome, ArbiterError>>) {
    match answered.recv_timeout(STAYS_BLOCKED) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("test_and_set returned while it should wait: {other:?}"),
    }
}

/// This test binary, running only the ignored helper test `name`.
fn child_test(name: &str, envs: &[(&str, &OsStr)]) -> Command {
    let (_crate, module) = module_path!().split_once("::").expect("crate::module");
    let mut command = Command::new(env::current_exe().expect("test binary"));
    command
        .args(["--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .arg(format!("{module}::{name}"))
        .envs(envs.iter().copied())
        .stdout(Stdio::piped());
    command
}

#[test]
fn init_status_reset_round_trip() {
    let dir = temp_dir();
    let arbiter = Arbiter::new(dir.path().join("flag"));

    assert_eq!(arbiter.init().unwrap(), free(0));
    assert_eq!(arbiter.status().unwrap(), free(0));
    assert_eq!(
        arbiter.try_test_and_set(0, "primary@10.0.0.1").unwrap(),
        Outcome::Won
    );
    assert_eq!(arbiter.status().unwrap(), owned(0, "primary@10.0.0.1"));
    assert_eq!(arbiter.reset().unwrap(), free(1));
    assert_eq!(arbiter.status().unwrap(), free(1));
    assert_eq!(arbiter.reset().unwrap(), free(2));
    assert_eq!(
        Arbiter::new(dir.path().join("flag")).status().unwrap(),
        free(2)
    );

    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["flag"], "init leaves no staging file behind");
}

#[test]
fn init_refuses_an_existing_file() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let arbiter = Arbiter::new(&path);
    arbiter.init().unwrap();
    arbiter.try_test_and_set(0, "backup").unwrap();

    let err = arbiter.init().unwrap_err();
    assert!(matches!(err, ArbiterError::AlreadyExists { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
    assert!(message.contains("already exists"), "{message}");
    assert_eq!(
        arbiter.status().unwrap(),
        owned(0, "backup"),
        "left untouched"
    );

    // Whatever the file holds.
    fs::write(&path, b"not a flag").unwrap();
    assert!(matches!(
        arbiter.init(),
        Err(ArbiterError::AlreadyExists { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), b"not a flag");
}

#[test]
fn init_needs_the_directory() {
    let dir = temp_dir();
    let path = dir.path().join("missing").join("flag");
    let err = Arbiter::new(&path).init().unwrap_err();
    assert!(matches!(err, ArbiterError::Create { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

/// Bytes that are not a valid flag, named for the assertion messages.
fn invalid_files() -> Vec<(&'static str, Vec<u8>)> {
    let valid = owned(3, "backup@10.0.0.2").encode();

    // xorshift64: reproducible noise without a dependency.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..RECORD_LEN)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();

    let mut flipped = valid;
    flipped[12] ^= 0x01; // the generation's low bit: 3 would read as 2

    // Offsets from the layout in record.rs: version at 8, checksum at 88.
    let mut newer = valid;
    newer[8] = 2;
    let crc = crc32c::crc32c(&newer[..88]);
    newer[88..].copy_from_slice(&crc.to_le_bytes());

    vec![
        ("random bytes", random),
        ("truncated", valid[..RECORD_LEN / 2].to_vec()),
        ("empty", Vec::new()),
        ("too long", [&valid[..], b"\n"].concat()),
        ("flipped byte", flipped.to_vec()),
        ("wrong version", newer.to_vec()),
    ]
}

#[test]
fn invalid_files_are_refused_by_every_operation() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let arbiter = Arbiter::new(&path);
    for (name, bytes) in invalid_files() {
        fs::write(&path, &bytes).unwrap();
        let results = [
            ("status", arbiter.status().map(|_| ())),
            ("reset", arbiter.reset().map(|_| ())),
            ("rearm", arbiter.rearm(3, "backup@10.0.0.2").map(|_| ())),
            (
                "try",
                arbiter.try_test_and_set(3, "backup@10.0.0.2").map(|_| ()),
            ),
            // No answer: a waiting test-and-set waits for a valid flag, and
            // says why when it gives up.
            (
                "wait",
                arbiter
                    .test_and_set(3, "backup@10.0.0.2", &after(Duration::from_millis(200)))
                    .map(|_| ())
                    .map_err(|err| match err {
                        ArbiterError::GaveUp { source } => *source,
                        other => panic!("no wait for a {name} file: {other:?}"),
                    }),
            ),
        ];
        for (operation, result) in results {
            let err = result.expect_err(&format!("{operation} accepted a {name} file"));
            assert!(
                matches!(err, ArbiterError::Invalid { .. }),
                "{operation} on a {name} file: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(&*path.to_string_lossy()), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "a {name} file is never overwritten"
        );
    }
}

#[test]
fn invalid_file_messages_say_what_is_wrong() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let expected = [
        ("random bytes", "bad magic"),
        ("truncated", "46 bytes long"),
        ("empty", "bad magic"),
        ("too long", "longer than"),
        ("flipped byte", "checksum mismatch"),
        ("wrong version", "unsupported format version 2"),
    ];
    for ((name, bytes), (expected_name, says)) in invalid_files().into_iter().zip(expected) {
        assert_eq!(name, expected_name);
        fs::write(&path, bytes).unwrap();
        let message = Arbiter::new(&path).status().unwrap_err().to_string();
        assert!(message.contains(says), "{name}: {message}");
    }
}

#[test]
fn the_last_generation_has_no_successor() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    fs::write(&path, owned(u64::MAX, "backup").encode()).unwrap();
    let arbiter = Arbiter::new(&path);
    for result in [arbiter.reset(), arbiter.rearm(u64::MAX, "backup")] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, ArbiterError::LastGeneration { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
    assert_eq!(arbiter.status().unwrap(), owned(u64::MAX, "backup"));
}

#[test]
fn owners_are_validated() {
    let dir = temp_dir();
    let arbiter = Arbiter::new(dir.path().join("flag"));
    arbiter.init().unwrap();
    let longest = "o".repeat(MAX_OWNER_LEN);
    for bad in ["", "a\nb", "tab\there", &"o".repeat(MAX_OWNER_LEN + 1)] {
        for result in [
            arbiter.try_test_and_set(0, bad).map(|_| ()),
            arbiter.test_and_set(0, bad, &after(PROMPTLY)).map(|_| ()),
            arbiter.rearm(0, bad).map(|_| ()),
        ] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, ArbiterError::InvalidOwner { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }
    assert_eq!(arbiter.status().unwrap(), free(0));
    assert_eq!(arbiter.try_test_and_set(0, &longest).unwrap(), Outcome::Won);
    assert_eq!(arbiter.status().unwrap(), owned(0, &longest));
}

#[test]
fn winning_is_idempotent_and_exclusive() {
    let dir = temp_dir();
    let arbiter = Arbiter::new(dir.path().join("flag"));
    arbiter.init().unwrap();

    assert_eq!(arbiter.try_test_and_set(0, "backup").unwrap(), Outcome::Won);
    // A retry after a crash between the write and the reply.
    assert_eq!(arbiter.try_test_and_set(0, "backup").unwrap(), Outcome::Won);
    assert_eq!(
        arbiter.test_and_set(0, "backup", &after(PROMPTLY)).unwrap(),
        Outcome::Won
    );
    assert_eq!(
        arbiter.try_test_and_set(0, "primary").unwrap(),
        Outcome::Lost(owned(0, "backup"))
    );
    assert_eq!(
        arbiter
            .test_and_set(0, "primary", &after(PROMPTLY))
            .unwrap(),
        Outcome::Lost(owned(0, "backup"))
    );
    // A generation the flag has not reached is no more winnable.
    assert_eq!(
        arbiter.try_test_and_set(1, "primary").unwrap(),
        Outcome::Lost(owned(0, "backup"))
    );
    assert_eq!(arbiter.status().unwrap(), owned(0, "backup"));
}

#[test]
fn a_stale_generation_loses_after_a_rearm() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let arbiter = Arbiter::new(&path);
    arbiter.init().unwrap();
    assert_eq!(arbiter.try_test_and_set(0, "backup").unwrap(), Outcome::Won);

    // Only the owner of the generation can start the next pair.
    for (generation, owner) in [(0, "primary"), (1, "backup")] {
        let err = arbiter.rearm(generation, owner).unwrap_err();
        let ArbiterError::NotOwner { found, .. } = &err else {
            panic!("rearm({generation}, {owner}): {err:?}");
        };
        assert_eq!(*found, owned(0, "backup"));
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
    assert_eq!(arbiter.rearm(0, "backup").unwrap(), free(1));
    assert!(matches!(
        arbiter.rearm(0, "backup"),
        Err(ArbiterError::NotOwner { .. })
    ));
    assert!(
        matches!(
            arbiter.rearm(1, "backup"),
            Err(ArbiterError::NotOwner { .. })
        ),
        "a generation no one owns cannot be rearmed"
    );

    // Both sides of the old pair are stale now, the old owner included.
    for owner in ["primary", "backup"] {
        assert_eq!(
            arbiter.try_test_and_set(0, owner).unwrap(),
            Outcome::Lost(free(1))
        );
    }
    assert_eq!(
        arbiter.try_test_and_set(1, "primary").unwrap(),
        Outcome::Won
    );
    assert_eq!(
        arbiter.test_and_set(0, "backup", &after(PROMPTLY)).unwrap(),
        Outcome::Lost(owned(1, "primary"))
    );
}

#[test]
fn one_winner_across_threads() {
    const CONTENDERS: usize = 8;
    const ROUNDS: usize = 25;
    let dir = temp_dir();
    for round in 0..ROUNDS {
        Arbiter::new(dir.path().join(format!("flag-{round}")))
            .init()
            .unwrap();
    }
    let start = Arc::new(Barrier::new(CONTENDERS));
    let contenders: Vec<_> = (0..CONTENDERS)
        .map(|contender| {
            let dir = dir.path().to_owned();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let owner = format!("thread-{contender}");
                (0..ROUNDS)
                    .map(|round| {
                        start.wait();
                        // Its own Arbiter, so its own opens: OFD locks must
                        // exclude other threads of the same process.
                        Arbiter::new(dir.join(format!("flag-{round}")))
                            .test_and_set(0, &owner, &after(PROMPTLY))
                            // Not unwrapped here: a panicking contender would
                            // leave the others waiting at the barrier.
                            .map_err(|err| err.to_string())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<Vec<Result<Outcome, String>>> =
        contenders.into_iter().map(|c| c.join().unwrap()).collect();

    for round in 0..ROUNDS {
        let winners: Vec<_> = (0..CONTENDERS)
            .filter(|&c| outcomes[c][round] == Ok(Outcome::Won))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let winner = owned(0, &format!("thread-{}", winners[0]));
        for (contender, outcome) in outcomes.iter().enumerate() {
            if contender != winners[0] {
                assert_eq!(
                    outcome[round],
                    Ok(Outcome::Lost(winner.clone())),
                    "round {round}"
                );
            }
        }
        let flag = Arbiter::new(dir.path().join(format!("flag-{round}")));
        assert_eq!(flag.status().unwrap(), winner);
    }
}

#[test]
fn one_winner_across_processes() {
    const CONTENDERS: usize = 6;
    const ROUNDS: usize = 40;
    let dir = temp_dir();
    for round in 0..ROUNDS {
        Arbiter::new(dir.path().join(format!("flag-{round}")))
            .init()
            .unwrap();
    }
    let rounds = ROUNDS.to_string();
    let contenders: Vec<Child> = (0..CONTENDERS)
        .map(|contender| {
            let owner = format!("process-{contender}");
            child_test(
                "contender_process",
                &[
                    (CHILD_DIR, dir.path().as_os_str()),
                    (CHILD_OWNER, owner.as_ref()),
                    (CHILD_ROUNDS, rounds.as_ref()),
                ],
            )
            .spawn()
            .expect("start a contender")
        })
        .collect();
    // The contenders start together, once all of them are up.
    fs::write(dir.path().join("go"), b"").unwrap();

    let reports: Vec<Vec<String>> = contenders
        .into_iter()
        .map(|contender| {
            let output = contender.wait_with_output().unwrap();
            assert!(output.status.success(), "a contender failed: {output:?}");
            String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                // libtest may print "test NAME ... " on the same line first.
                .filter_map(|line| line.split_once("OUTCOME ").map(|(_, r)| r.to_owned()))
                .collect()
        })
        .collect();

    for (contender, report) in reports.iter().enumerate() {
        assert_eq!(
            report.len(),
            ROUNDS,
            "process-{contender} reported {report:?}"
        );
    }
    for round in 0..ROUNDS {
        let winners: Vec<_> = (0..CONTENDERS)
            .filter(|&c| reports[c][round] == format!("{round} won"))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let winner = owned(0, &format!("process-{}", winners[0]));
        for (contender, report) in reports.iter().enumerate() {
            if contender != winners[0] {
                assert_eq!(report[round], format!("{round} lost: {winner}"));
            }
        }
        let flag = Arbiter::new(dir.path().join(format!("flag-{round}")));
        assert_eq!(flag.status().unwrap(), winner);
    }
}

/// A contender of `one_winner_across_processes`: contends for every round's
/// flag in turn and prints one `OUTCOME` line per round.
#[test]
#[ignore = "a child process of one_winner_across_processes"]
fn contender_process() {
    let Some(dir) = env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let owner = env::var(CHILD_OWNER).unwrap();
    let rounds: usize = env::var(CHILD_ROUNDS).unwrap().parse().unwrap();
    let started = Instant::now();
    while !dir.join("go").exists() {
        assert!(started.elapsed() < PROMPTLY, "never told to go");
        thread::sleep(Duration::from_millis(1));
    }
    for round in 0..rounds {
        let outcome = Arbiter::new(dir.join(format!("flag-{round}")))
            .test_and_set(0, &owner, &after(PROMPTLY))
            .unwrap();
        match outcome {
            Outcome::Won => println!("OUTCOME {round} won"),
            Outcome::Lost(found) => println!("OUTCOME {round} lost: {found}"),
        }
    }
}

#[test]
fn waits_while_another_process_holds_the_lock() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let arbiter = Arbiter::new(&path);
    arbiter.init().unwrap();

    let mut holder = child_test("lock_holder_process", &[(CHILD_LOCK, path.as_os_str())])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the lock holder");
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|line| line.unwrap().ends_with("LOCKED")),
        "the lock holder never took the lock"
    );

    let err = arbiter.try_test_and_set(0, "backup").unwrap_err();
    assert!(matches!(err, ArbiterError::Busy { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");

    let answered = spawn_test_and_set(&path, 0, "backup", after(2 * PROMPTLY));
    assert_still_waiting(&answered);

    drop(holder.stdin.take()); // tells the holder to exit, releasing the lock
    assert!(holder.wait().unwrap().success());
    assert_eq!(
        answered.recv_timeout(PROMPTLY).unwrap().unwrap(),
        Outcome::Won
    );
    assert_eq!(arbiter.status().unwrap(), owned(0, "backup"));
}

/// The lock holder of `waits_while_another_process_holds_the_lock`: takes
/// the lock, says `LOCKED`, and holds it until its standard input closes,
/// or for a bounded time, so a failing parent cannot leave it behind.
#[test]
#[ignore = "a child process of waits_while_another_process_holds_the_lock"]
fn lock_holder_process() {
    let Some(path) = env::var_os(CHILD_LOCK) else {
        return;
    };
    let _locked = hold_lock(Path::new(&path));
    println!("LOCKED");
    let (closed, stdin_closed) = mpsc::channel();
    thread::spawn(move || closed.send(io::stdin().read_to_end(&mut Vec::new()).map(drop)));
    stdin_closed
        .recv_timeout(2 * PROMPTLY)
        .expect("the parent never released the lock holder")
        .unwrap();
}

#[test]
fn waits_while_another_open_file_description_holds_the_lock() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let arbiter = Arbiter::new(&path);
    arbiter.init().unwrap();
    arbiter.try_test_and_set(0, "primary").unwrap();

    // The same process: a classic POSIX lock would not exclude this.
    let locked = hold_lock(&path);
    assert!(matches!(
        arbiter.try_test_and_set(0, "backup"),
        Err(ArbiterError::Busy { .. })
    ));
    let answered = spawn_test_and_set(&path, 0, "backup", after(2 * PROMPTLY));
    assert_still_waiting(&answered);

    drop(locked);
    assert_eq!(
        answered.recv_timeout(PROMPTLY).unwrap().unwrap(),
        Outcome::Lost(owned(0, "primary"))
    );
}

#[test]
fn give_up_ends_the_wait() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let arbiter = Arbiter::new(&path);
    arbiter.init().unwrap();
    let locked = hold_lock(&path);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = spawn_test_and_set(&path, 0, "backup", {
        let stop = Arc::clone(&stop);
        move || stop.load(Ordering::Relaxed)
    });
    assert_still_waiting(&answered);
    stop.store(true, Ordering::Relaxed);
    let err = answered.recv_timeout(PROMPTLY).unwrap().unwrap_err();
    let ArbiterError::GaveUp { source } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(**source, ArbiterError::Busy { .. }), "{source:?}");
    let message = err.to_string();
    assert!(message.starts_with("gave up waiting"), "{message}");
    assert!(message.contains(&*path.to_string_lossy()), "{message}");

    drop(locked);
    assert_eq!(
        arbiter.status().unwrap(),
        free(0),
        "giving up changed nothing"
    );
}

#[test]
fn waits_for_a_missing_file_and_wins_once_it_appears() {
    let dir = temp_dir();
    let subdir = dir.path().join("mount");
    let path = subdir.join("flag");

    // Neither the directory (an absent mount) nor the file exists yet.
    let answered = spawn_test_and_set(&path, 0, "backup", after(2 * PROMPTLY));
    assert_still_waiting(&answered);
    fs::create_dir(&subdir).unwrap();
    assert_still_waiting(&answered);
    Arbiter::new(&path).init().unwrap();

    assert_eq!(
        answered.recv_timeout(PROMPTLY).unwrap().unwrap(),
        Outcome::Won
    );
    assert_eq!(Arbiter::new(&path).status().unwrap(), owned(0, "backup"));
}

#[test]
fn giving_up_on_a_missing_file_reports_why() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let answered = spawn_test_and_set(&path, 0, "backup", after(Duration::from_millis(200)));
    let err = answered.recv_timeout(PROMPTLY).unwrap().unwrap_err();
    let ArbiterError::GaveUp { source } = &err else {
        panic!("{err:?}");
    };
    let ArbiterError::Open {
        source: io_error, ..
    } = &**source
    else {
        panic!("{source:?}");
    };
    assert_eq!(io_error.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

/// Counts warning events, to check how often a wait logs.
struct WarningCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for WarningCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_wait_warns_once_per_reason() {
    let dir = temp_dir();
    let path = dir.path().join("flag");
    let (report, reported) = mpsc::channel();
    // On a thread of its own so a wait that never ends fails the test
    // instead of hanging it; the subscriber is that thread's default.
    thread::spawn(move || {
        let arbiter = Arbiter::new(&path);
        let warnings = Arc::new(AtomicUsize::new(0));
        // `give_up` runs once per failed attempt, so it can stage the
        // scenario: the file is missing for a few attempts, then locked by
        // someone else for a few more, then free.
        let attempts = Cell::new(0);
        let locked = RefCell::new(None);
        let stage = || {
            attempts.set(attempts.get() + 1);
            match attempts.get() {
                4 => {
                    arbiter.init().unwrap();
                    *locked.borrow_mut() = Some(hold_lock(&path));
                }
                8 => *locked.borrow_mut() = None,
                _ => {}
            }
            attempts.get() > 20
        };
        let counter = WarningCounter(Arc::clone(&warnings));
        let outcome = tracing::subscriber::with_default(counter, || {
            arbiter.test_and_set(0, "backup", &stage)
        });
        report.send((
            outcome.map_err(|err| err.to_string()),
            attempts.get(),
            warnings.load(Ordering::Relaxed),
        ))
    });

    let (outcome, attempts, warnings) = reported.recv_timeout(PROMPTLY).unwrap();
    assert_eq!(outcome, Ok(Outcome::Won));
    assert_eq!(attempts, 8, "failed attempts: 4 missing, 4 locked");
    assert_eq!(warnings, 2, "one for missing, one for locked");
}
