//! `kvstore` as the Redis that real tools and clients expect (issue 13):
//! redis-benchmark's default tests alone and under a pair, a redis-py
//! workload recorded and replayed, log compaction surviving SIGKILL at
//! random moments, and malformed requests.
//!
//! Guests are emulated instruction by instruction, so the workloads are
//! small; the sizes are the issue's.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::Shutdown;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::hosts::Hosts;
use common::lan::{Connection, GUEST, REDIS, connect_in, disk_of, fresh_disk, kvstore, multibulk};
use common::pair::{host_name, seed, serial};

/// How long a request may wait: through a takeover, or a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `program ARGS` in `namespace` and waits for it.
fn client(namespace: &str, program: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", namespace, program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the client")
}

/// redis-benchmark's default test list (redis-tools 7.0).
const DEFAULT_TESTS: [&str; 20] = [
    "PING_INLINE",
    "PING_MBULK",
    "SET",
    "GET",
    "INCR",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "SADD",
    "HSET",
    "SPOP",
    "ZADD",
    "ZPOPMIN",
    "LPUSH (needed to benchmark LRANGE)",
    "LRANGE_100 (first 100 elements)",
    "LRANGE_300 (first 300 elements)",
    "LRANGE_500 (first 500 elements)",
    "LRANGE_600 (first 600 elements)",
    "MSET (10 keys)",
];

/// `redis-benchmark -n 200 -c 4 -e` with its default tests from host c:
/// each must run to the end and report a rate, without a server error.
fn assert_benchmark_runs(hosts: &Hosts) {
    let out = client(
        &hosts.namespace('c'),
        "redis-benchmark",
        &["-h", GUEST, "-n", "200", "-c", "4", "-e", "--csv"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("Error from server"), "{stdout}\n{stderr}");
        // redis-benchmark asks for CONFIG GET save and appendonly.
        assert!(!text.contains("Could not fetch server CONFIG"), "{text}");
    }
    let rates: BTreeMap<String, f64> = stdout
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split("\",\"").collect();
            let name = fields.first()?.trim_matches('"').to_owned();
            let rate = fields.get(1)?.trim_matches('"').parse().ok()?;
            Some((name, rate))
        })
        .collect();
    for test in DEFAULT_TESTS {
        let rate = rates.get(test).copied().unwrap_or_default();
        assert!(rate > 0.0, "{test}: no rate in\n{stdout}\n{stderr}");
    }
    eprintln!("{stdout}");
}

#[test]
fn redis_benchmark_runs_its_default_tests_against_ftvm_run() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("rbr"));
    let dir = common::scratch_dir("redis-bench-run");
    let mut server = hosts.kvstore(&["run"], &fresh_disk(&dir));
    assert_benchmark_runs(&hosts);
    server.kill();
}

#[test]
fn redis_benchmark_runs_its_default_tests_against_a_pair() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("rbp"));
    let setup = hosts.setup("redis-bench-pair");
    let disk = fresh_disk(&setup.dir);
    let (mut backup, mut primary) = hosts.serving_pair(&setup, &kvstore(&disk));
    assert_benchmark_runs(&hosts);
    primary.kill();
    backup.kill();
}

/// redis-py from PyPI with its default settings drives every type, both
/// kinds of pipeline, expiry and 1 MiB values (tests/clients/); the run is
/// recorded, and its trace replays exactly without the disk or network.
#[test]
fn redis_py_drives_every_command_and_the_run_replays() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("rpy"));
    let dir = common::scratch_dir("redis-py");
    // 16 MiB: room for 1 MiB values to be written and overwritten.
    let disk = disk_of(&dir, 16 << 20);
    let trace = dir.join("kvstore.trace");
    let trace_arg = trace.to_str().unwrap();
    let server = hosts.kvstore(&["record", "--trace", trace_arg], &disk);
    let workload = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/clients/redis_py_workload.py"
    );
    let out = client(&hosts.namespace('c'), "python3", &[workload, GUEST]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("redis-py workload: ok"), "{stdout}");
    server.signal(libc::SIGTERM);
    let recorded = server.finish(TIMEOUT);
    assert_eq!(recorded.code(), 143, "{recorded:#?}");
    fs::remove_file(&disk).unwrap();
    drop(hosts);
    let replayed = common::run(&["replay", "--verify", trace_arg]);
    assert_eq!(replayed.code(), 143, "{replayed:#?}");
    assert_eq!(replayed.stdout, recorded.stdout);
    assert!(replayed.stderr.contains("replay verified"), "{replayed:#?}");
}

/// One INFO section's `name:value` fields.
fn info(connection: &mut Connection, section: &str) -> BTreeMap<String, String> {
    let reply = connection.call(&format!("INFO {section}")).unwrap();
    reply
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect()
}

fn number(fields: &BTreeMap<String, String>, name: &str) -> u64 {
    fields[name].parse().unwrap()
}

/// Issue 13: one key overwritten 10 000 times on a 4 MiB disk never fills
/// it, since the log is compacted as it grows.
fn overwrite_without_filling_the_disk(connection: &mut Connection) {
    for batch in 0..50 {
        let mut pipeline = Vec::new();
        for i in 0..200 {
            let value = format!("{:0>300}", batch * 200 + i);
            pipeline.extend(multibulk(&[b"SET", b"k", value.as_bytes()]));
        }
        connection.send(&pipeline).unwrap();
        for i in 0..200 {
            assert_eq!(
                connection.reply().unwrap(),
                "+OK",
                "SET {}",
                batch * 200 + i
            );
        }
    }
    assert_eq!(
        connection.call("GET k").unwrap(),
        format!("$300\r\n{:0>300}", 9999)
    );
    let persistence = info(connection, "persistence");
    assert!(number(&persistence, "aof_rewrites") >= 3, "{persistence:?}");
    assert!(
        number(&persistence, "aof_current_size") < 1 << 20,
        "{persistence:?}"
    );
}

/// Keys written by the writer thread: the value each was last
/// acknowledged with, and for the last batch (unacknowledged when the
/// server died) the value it may have taken instead.
#[derive(Default)]
struct Written {
    acked: BTreeMap<String, String>,
    in_flight: BTreeMap<String, String>,
}

/// Overwrites `keys` keys round-robin with unique values in pipelines of
/// 20 on `connection` until it fails or `stop` is set.
fn write_until(
    mut connection: Connection,
    keys: usize,
    round: usize,
    stop: &AtomicBool,
) -> Written {
    let mut written = Written::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<(String, String)> = (0..20)
            .map(|_| {
                n += 1;
                let key = format!("key{}", n % keys);
                (key, format!("{round}-{n}-{}", "v".repeat(900)))
            })
            .collect();
        let mut pipeline = Vec::new();
        for (key, value) in &batch {
            pipeline.extend(multibulk(&[b"SET", key.as_bytes(), value.as_bytes()]));
        }
        written.in_flight = batch.iter().cloned().collect();
        if connection.send(&pipeline).is_err() {
            return written;
        }
        for (key, value) in batch {
            match connection.reply() {
                Ok(reply) => {
                    assert_eq!(reply, "+OK", "SET {key}");
                    written.in_flight.remove(&key);
                    written.acked.insert(key, value);
                }
                Err(_) => return written,
            }
        }
    }
    written
}

/// Polls INFO persistence on a new connection until a compaction runs,
/// then waits `delay`. Fails if none starts, or if `writer_done` reports
/// the writer gave up first.
fn wait_for_compaction(namespace: &str, delay: Duration, writer_done: &mpsc::Receiver<()>) {
    let mut watcher = Connection::open(namespace, PATIENCE);
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < TIMEOUT, "no compaction started");
        assert!(writer_done.try_recv().is_err(), "the writer stopped");
        let persistence = info(&mut watcher, "persistence");
        if persistence["aof_rewrite_in_progress"] == "1" {
            thread::sleep(delay);
            return;
        }
        // Not so often that answering INFO is most of the guest's work.
        thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that the server at host c's reach has every value `known`
/// holds, or for keys `in_flight` names, that value instead (updating
/// `known` to what it found).
fn assert_has(
    namespace: &str,
    known: &mut BTreeMap<String, String>,
    in_flight: &BTreeMap<String, String>,
    context: &str,
) {
    let mut check = Connection::open(namespace, PATIENCE);
    for (key, value) in known.clone() {
        let got = check.call(&format!("GET {key}")).unwrap();
        let expected = format!("${}\r\n{value}", value.len());
        match in_flight.get(&key) {
            Some(new) if got != expected => {
                assert_eq!(got, format!("${}\r\n{new}", new.len()), "{context}: {key}");
                known.insert(key, new.clone());
            }
            _ => assert_eq!(got, expected, "{context}: {key} lost"),
        }
    }
    check.close();
}

#[test]
fn compaction_survives_sigkill_at_random_moments() {
    const KILLS: u64 = 5;
    const KEYS: usize = 200;
    let _one = serial();
    let seed = seed();
    let hosts = Hosts::up(&host_name("cmp"));
    let c = hosts.namespace('c');
    let dir = common::scratch_dir("redis-compaction");
    let disk = fresh_disk(&dir);
    let mut server = hosts.kvstore(&["run"], &disk);
    let mut connection = Connection::open(&c, Duration::from_secs(30));
    let phase = Instant::now();
    overwrite_without_filling_the_disk(&mut connection);
    eprintln!("10 000 overwrites in {:?}", phase.elapsed());
    connection.close();

    // 200 keys of 1 KiB: a compaction takes several steps, and the kill
    // lands in one of them.
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..KILLS {
        let (done, finished) = mpsc::channel();
        let connection = Connection::open(&c, PATIENCE);
        let severed = connection.stream();
        let writer = thread::spawn(move || {
            let written = write_until(connection, KEYS, round as usize, &AtomicBool::new(false));
            done.send(()).unwrap();
            written
        });
        let delay = Duration::from_millis((seed.wrapping_mul(round + 7) >> 3) % 40);
        wait_for_compaction(&c, delay, &finished);
        server.kill();
        // A killed guest sends neither a reply nor a reset: end the
        // writer's wait now rather than at its read timeout.
        let _ = severed.shutdown(Shutdown::Both);
        let written = writer.join().unwrap();
        assert!(written.acked.len() > 10, "round {round}: too few writes");
        eprintln!(
            "round {round}: killed {delay:?} after INFO showed a compaction ({} writes acknowledged)",
            written.acked.len()
        );
        // A fresh boot from the disk has every acknowledged value (and
        // for the batch in flight, the old or the new one).
        server = hosts.kvstore(&["run"], &disk);
        known.extend(written.acked);
        assert_has(
            &c,
            &mut known,
            &written.in_flight,
            &format!("round {round}"),
        );
        let mut check = Connection::open(&c, PATIENCE);
        assert_eq!(
            check.call("GET k").unwrap(),
            format!("$300\r\n{:0>300}", 9999)
        );
        check.close();
    }
    server.kill();
}

/// A takeover while a compaction runs on the primary loses no
/// acknowledged write: the writer's connection carries on through it, the
/// new primary has every acknowledged value, and so does a fresh boot from
/// the shared disk.
#[test]
fn a_takeover_during_compaction_loses_no_acknowledged_write() {
    const KEYS: usize = 200;
    let _one = serial();
    let seed = seed();
    let hosts = Hosts::up(&host_name("tko"));
    let c = hosts.namespace('c');
    let setup = hosts.setup("redis-takeover-compaction");
    let disk = fresh_disk(&setup.dir);
    let (mut backup, primary) = hosts.serving_pair(&setup, &kvstore(&disk));
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel();
    let writer = {
        let (connection, stop) = (Connection::open(&c, PATIENCE), stop.clone());
        thread::spawn(move || {
            let written = write_until(connection, KEYS, 0, &stop);
            done.send(()).unwrap();
            written
        })
    };
    let delay = Duration::from_millis(seed % 40);
    wait_for_compaction(&c, delay, &finished);
    hosts.takeover("kill");
    assert!(backup.wait_event("live"), "{}", backup.stderr.text());
    // Writes go on through the takeover, on the same connection.
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(
        written.in_flight.is_empty(),
        "a write failed across the takeover"
    );
    eprintln!(
        "killed the primary {delay:?} after INFO showed a compaction; {} writes acknowledged",
        written.acked.len()
    );
    let mut known = written.acked;
    assert_has(&c, &mut known, &BTreeMap::new(), "the new primary");
    let _ = primary.finish(TIMEOUT);
    backup.kill();
    let fresh = hosts.kvstore_in('b', &["run"], &disk);
    assert_has(&c, &mut known, &BTreeMap::new(), "a fresh boot");
    let mut fresh = fresh;
    fresh.kill();
}

/// With little memory, writes that add data past Redis's `maxmemory` get
/// its OOM error while reads and deletes go on, and a delete makes room
/// again: the guest never runs out of memory.
#[test]
fn a_full_memory_refuses_writes_with_redis_oom_error() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("oom"));
    let c = hosts.namespace('c');
    let dir = common::scratch_dir("redis-oom");
    // 24 MiB of RAM: about 6 MiB for data; the disk holds more.
    let disk = disk_of(&dir, 32 << 20);
    let mut server = hosts.kvstore(&["run", "--mem-mib", "24"], &disk);
    let mut client = Connection::open(&c, PATIENCE);
    let value = "v".repeat(64 << 10);
    let set = |client: &mut Connection, key: &str| {
        client
            .send(&multibulk(&[b"SET", key.as_bytes(), value.as_bytes()]))
            .unwrap();
        client.reply().unwrap()
    };
    let oom = "-OOM command not allowed when used memory > 'maxmemory'.";
    let mut stored = 0;
    loop {
        let reply = set(&mut client, &format!("key{stored}"));
        if reply == oom {
            break;
        }
        assert_eq!(reply, "+OK", "SET key{stored}");
        stored += 1;
        assert!(stored < 200, "memory never filled");
    }
    assert!(stored > 10, "only {stored} values fit");
    // Refused again: what the refused request held is freed, no more.
    assert_eq!(set(&mut client, "again"), oom);
    assert_eq!(
        client.call("GET key0").unwrap(),
        format!("${}\r\n{value}", value.len())
    );
    assert_eq!(client.call("DBSIZE").unwrap(), format!(":{stored}"));
    // Memory went over the limit: that is why the writes were refused.
    // The refused requests' own memory is freed by now, so it is the peak
    // that shows it; what is in use now may be just under the limit.
    let memory = info(&mut client, "memory");
    let peak = number(&memory, "used_memory_peak");
    assert!(peak > number(&memory, "maxmemory"), "{memory:?}");
    assert!(number(&memory, "used_memory") <= peak, "{memory:?}");
    // Deleting makes room.
    let keys: Vec<String> = (0..stored / 2).map(|i| format!("key{i}")).collect();
    assert_eq!(
        client.call(&format!("DEL {}", keys.join(" "))).unwrap(),
        format!(":{}", stored / 2)
    );
    assert_eq!(set(&mut client, "after-delete"), "+OK");
    client.close();
    server.kill();
}

/// Malformed requests of each kind get Redis's errors and close their
/// connection; the VM and the other connections carry on.
#[test]
fn malformed_requests_get_redis_errors_and_the_others_carry_on() {
    let _one = serial();
    let hosts = Hosts::up(&host_name("mal"));
    let c = hosts.namespace('c');
    let dir = common::scratch_dir("redis-malformed");
    let mut server = hosts.kvstore(&["run"], &fresh_disk(&dir));
    let mut bystander = Connection::open(&c, Duration::from_secs(30));
    assert_eq!(bystander.call("SET survivor 1").unwrap(), "+OK");
    let huge_inline = format!("SET k {}\r\n", "x".repeat(70 * 1024));
    let cases: [(&[u8], &str); 9] = [
        (b"*abc\r\n", "-ERR Protocol error: invalid multibulk length"),
        (b"*-1x\r\n", "-ERR Protocol error: invalid multibulk length"),
        (
            b"*99999999999\r\n",
            "-ERR Protocol error: invalid multibulk length",
        ),
        (b"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length"),
        (
            b"*2\r\n$3\r\nGET\r\n$x\r\n",
            "-ERR Protocol error: invalid bulk length",
        ),
        // A value over the 1 MiB + 4 KiB request limit.
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1100000\r\n",
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\nGET\r\n",
            "-ERR Protocol error: expected '$', got 'G'",
        ),
        (
            b"SET \"unbalanced\r\n",
            "-ERR Protocol error: unbalanced quotes in request",
        ),
        (
            huge_inline.as_bytes(),
            "-ERR Protocol error: too big inline request",
        ),
    ];
    for (index, (request, error)) in cases.into_iter().enumerate() {
        let mut bad = Connection::open(&c, Duration::from_secs(30));
        bad.send(request).unwrap();
        assert_eq!(bad.reply().unwrap(), error);
        assert!(bad.reply().is_err(), "the connection closes after {error}");
        let count = index + 2;
        assert_eq!(
            bystander.call("INCR survivor").unwrap(),
            format!(":{count}")
        );
    }
    // Binary garbage: whatever it is taken for, the server carries on.
    let mut rng = seed() | 1;
    for _ in 0..5 {
        let garbage: Vec<u8> = (0..3000)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let mut stream = connect_in(&c, REDIS);
        stream.write_all(&garbage).unwrap();
        drop(stream);
        bystander.call("INCR survivor").unwrap();
    }
    assert_eq!(bystander.call("GET survivor").unwrap(), "$2\r\n15");
    let mut fresh = Connection::open(&c, Duration::from_secs(30));
    assert_eq!(fresh.call("PING").unwrap(), "+PONG");
    fresh.close();
    bystander.close();
    server.kill();
}
