//! Commands where this server's answers are its own (version, limits,
//! persistence) or depend on time, and the write-ahead rules.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use std::string::String;
use std::{format, vec};

use super::{World, XorShift, dump, multibulk, replayed};
use crate::kv::Refusal;

#[test]
fn hello_switches_protocols_and_answers_as_redis_does() {
    let mut world = World::new();
    let fields = |proto: &str| {
        format!(
            "$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n\
             $5\r\nproto\r\n:{proto}\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
             $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
        )
    };
    assert_eq!(world.call(&[b"HELLO"]), format!("*14\r\n{}", fields("2")));
    assert_eq!(
        world.call(&[b"HELLO", b"3"]),
        format!("%7\r\n{}", fields("3"))
    );
    assert_eq!(world.call(&[b"GET", b"nope"]), "_\r\n");
    assert_eq!(
        world.call(&[
            b"HELLO", b"3", b"AUTH", b"default", b"any", b"SETNAME", b"me"
        ]),
        format!("%7\r\n{}", fields("3"))
    );
    assert_eq!(world.call(&[b"CLIENT", b"GETNAME"]), "$2\r\nme\r\n");
    assert_eq!(
        world.call(&[b"HELLO", b"3", b"AUTH", b"alice", b"pw"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        world.call(&[b"HELLO", b"2"]),
        format!("*14\r\n{}", fields("2"))
    );
    assert_eq!(world.call(&[b"GET", b"nope"]), "$-1\r\n");
}

#[test]
fn redis_py_connection_setup_is_answered() {
    // What redis-py 8 sends on every new connection.
    let mut world = World::new();
    world.call(&[b"HELLO", b"3"]);
    let mut input = multibulk(&[
        b"CLIENT",
        b"MAINT_NOTIFICATIONS",
        b"ON",
        b"moving-endpoint-type",
        b"internal-fqdn",
    ]);
    input.extend(multibulk(&[
        b"CLIENT",
        b"SETINFO",
        b"LIB-NAME",
        b"redis-py",
    ]));
    input.extend(multibulk(&[b"CLIENT", b"SETINFO", b"LIB-VER", b"8.2.0"]));
    assert_eq!(
        world.send(&input),
        "-ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.\r\n+OK\r\n+OK\r\n"
    );
    assert_eq!(
        world.call(&[b"CLIENT", b"SETINFO", b"LIB-FOO", b"x"]),
        "-ERR Unrecognized option 'LIB-FOO'\r\n"
    );
    assert_eq!(
        world.call(&[b"CLIENT", b"SETINFO", b"LIB-NAME"]),
        "-ERR wrong number of arguments for 'client|setinfo' command\r\n"
    );
    assert_eq!(world.call(&[b"CLIENT", b"ID"]), ":1\r\n");
}

#[test]
fn config_get_answers_what_redis_benchmark_asks() {
    let mut world = World::new();
    assert_eq!(
        world.call(&[b"CONFIG", b"GET", b"save"]),
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
    assert_eq!(
        world.call(&[b"CONFIG", b"GET", b"APPENDONLY"]),
        "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
    );
    let all = world.call(&[b"CONFIG", b"GET", b"append*", b"save"]);
    assert!(all.starts_with("*6\r\n"), "{all}");
    world.call(&[b"HELLO", b"3"]);
    assert_eq!(
        world.call(&[b"CONFIG", b"GET", b"save"]),
        "%1\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
}

#[test]
fn info_has_redis_sections_and_fields() {
    let mut world = World::new();
    world.call(&[b"SET", b"a", b"1"]);
    world.call(&[b"SET", b"b", b"1", b"EX", b"100"]);
    let info = world.call(&[b"INFO"]);
    for needle in [
        "# Server\r\n",
        "redis_version:7.2.0\r\n",
        "# Clients\r\n",
        "# Memory\r\n",
        "# Persistence\r\n",
        "aof_rewrite_in_progress:0\r\n",
        "aof_rewrites:0\r\n",
        "aof_current_size:0\r\n",
        "# Stats\r\n",
        "# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n",
    ] {
        assert!(info.contains(needle), "{needle:?} in {info}");
    }
    let persistence = world.call(&[b"INFO", b"persistence"]);
    assert!(persistence.starts_with("$"), "{persistence}");
    assert!(!persistence.contains("# Server"));
    assert!(persistence.contains("aof_enabled:1\r\n"));
    world.call(&[b"HELLO", b"3"]);
    let verbatim = world.call(&[b"INFO", b"keyspace"]);
    assert!(verbatim.starts_with("="), "{verbatim}");
    assert!(verbatim.contains("txt:# Keyspace\r\n"), "{verbatim}");
}

#[test]
fn scan_returns_every_key_present_throughout_exactly_once_or_more() {
    let mut world = World::new();
    for i in 0..200 {
        world.call(&[b"SET", format!("key:{i}").as_bytes(), b"v"]);
    }
    let mut seen = BTreeSet::new();
    let mut cursor = String::from("0");
    let mut rounds = 0;
    loop {
        let reply = world.call(&[
            b"SCAN",
            cursor.as_bytes(),
            b"COUNT",
            b"7",
            b"MATCH",
            b"key:*",
        ]);
        let lines: Vec<&str> = reply.split("\r\n").collect();
        cursor = lines[2].to_owned();
        for key in lines[4..].iter().skip(1).step_by(2) {
            seen.insert((*key).to_owned());
        }
        // Keys come and go meanwhile; key:0..100 stay throughout.
        world.call(&[b"SET", format!("new:{rounds}").as_bytes(), b"v"]);
        world.call(&[b"DEL", format!("key:{}", 100 + rounds).as_bytes()]);
        rounds += 1;
        if cursor == "0" {
            break;
        }
        assert!(rounds < 200);
    }
    for i in 0..100 {
        assert!(seen.contains(&format!("key:{i}")), "key:{i}");
    }
    assert!(seen.iter().all(|key| key.starts_with("key:")));
    assert!(rounds > 5, "COUNT 7 over 200 keys takes several calls");
    let keys = world.call(&[b"KEYS", b"key:1?"]);
    assert!(keys.starts_with("*10\r\n"), "{keys}");
}

#[test]
fn keys_expire_on_the_hosts_clock_and_the_log_replays_them() {
    let mut world = World::new();
    let start = world.host.now;
    world.call(&[b"SET", b"s", b"v", b"EX", b"10"]);
    world.call(&[b"SET", b"p", b"v", b"PX", b"1500"]);
    world.call(&[b"RPUSH", b"l", b"x"]);
    world.call(&[b"EXPIRE", b"l", b"5"]);
    world.call(&[b"SET", b"forever", b"v"]);
    assert_eq!(world.call(&[b"TTL", b"s"]), ":10\r\n");
    assert_eq!(world.call(&[b"PTTL", b"p"]), ":1500\r\n");
    world.host.now = start + 1_499;
    assert_eq!(world.call(&[b"PTTL", b"p"]), ":1\r\n");
    world.host.now = start + 1_500;
    assert_eq!(world.call(&[b"GET", b"p"]), "$-1\r\n");
    assert_eq!(world.call(&[b"TTL", b"p"]), ":-2\r\n");
    assert_eq!(world.call(&[b"TTL", b"s"]), ":9\r\n");
    world.host.now = start + 5_000;
    assert_eq!(world.call(&[b"LLEN", b"l"]), ":0\r\n");
    // A list created anew in place of the expired one.
    world.call(&[b"RPUSH", b"l", b"fresh"]);
    assert_eq!(world.call(&[b"TTL", b"l"]), ":-1\r\n");
    world.host.now = start + 20_000;
    assert_eq!(world.call(&[b"EXISTS", b"s"]), ":0\r\n");
    assert_eq!(world.call(&[b"DBSIZE"]), ":2\r\n");
    // A replay of the log, with the times it recorded, agrees.
    assert_eq!(dump(&replayed(&world.host.logged)), dump(&world.kv));
}

#[test]
fn active_expiry_deletes_keys_past_their_deadline() {
    let mut world = World::new();
    let start = world.host.now;
    for i in 0..10 {
        world.call(&[
            b"SET",
            format!("k{i}").as_bytes(),
            b"v",
            b"PX",
            format!("{}", 100 * (i + 1)).as_bytes(),
        ]);
    }
    assert_eq!(world.kv.next_deadline(), Some(start + 100));
    world.host.now = start + 450;
    assert_eq!(world.call(&[b"DBSIZE"]), ":6\r\n");
    // Invisible, but still there until deleted.
    assert_eq!(world.kv.len(), 10);
    let logged = world.host.logged.len();
    world.kv.expire_due(&mut world.host, start + 450, 100);
    assert_eq!(world.kv.len(), 6);
    assert_eq!(world.host.logged.len(), logged + 1);
    // Not due by the estimate: the clock is not even read.
    let reads = world.host.clock_reads;
    world.kv.expire_due(&mut world.host, start + 450, 100);
    assert_eq!(world.host.clock_reads, reads);
    world.host.now = start + 1000;
    world.kv.expire_due(&mut world.host, start + 1000, 2);
    assert_eq!(world.kv.len(), 4);
    // No room in the log: nothing is deleted.
    world.host.refuse = Some(Refusal::DiskFull);
    world.kv.expire_due(&mut world.host, start + 1000, 100);
    assert_eq!(world.kv.len(), 4);
    world.host.refuse = None;
    world.kv.expire_due(&mut world.host, start + 1000, 100);
    assert_eq!(world.kv.len(), 0);
    assert_eq!(dump(&replayed(&world.host.logged)), dump(&world.kv));
}

#[test]
fn the_clock_is_read_only_by_commands_that_need_it() {
    let mut world = World::new();
    world.call(&[b"SET", b"a", b"1"]);
    world.call(&[b"GET", b"a"]);
    world.call(&[b"INCR", b"n"]);
    world.call(&[b"LPUSH", b"l", b"x"]);
    world.call(&[b"MSET", b"b", b"2", b"c", b"3"]);
    assert_eq!(world.host.clock_reads, 0);
    world.call(&[b"EXPIRE", b"a", b"100"]);
    assert_eq!(world.host.clock_reads, 1);
    // A key with a deadline is checked against the clock when touched.
    world.call(&[b"GET", b"a"]);
    assert_eq!(world.host.clock_reads, 2);
}

/// A pop of 0 elements, or from a missing key, changes nothing: it is not
/// logged and reads no clock. SPOP reads it once, to draw its members.
#[test]
fn pops_that_take_nothing_are_not_logged() {
    let mut world = World::new();
    world.call(&[b"RPUSH", b"l", b"x"]);
    world.call(&[b"SADD", b"s", b"x"]);
    world.call(&[b"ZADD", b"z", b"1", b"x"]);
    let logged = world.host.logged.len();
    for (pop, key) in [
        (&b"LPOP"[..], &b"l"[..]),
        (b"RPOP", b"l"),
        (b"SPOP", b"s"),
        (b"ZPOPMIN", b"z"),
    ] {
        world.call(&[pop, key, b"0"]);
        world.call(&[pop, b"nope"]);
        world.call(&[pop, b"nope", b"2"]);
    }
    assert_eq!(world.host.logged.len(), logged);
    assert_eq!(world.host.clock_reads, 0);
    assert_eq!(world.call(&[b"SPOP", b"s"]), "$1\r\nx\r\n");
    assert_eq!(world.host.clock_reads, 1);
    assert_eq!(world.host.logged.len(), logged + 1);
}

#[test]
fn a_write_that_cannot_be_made_durable_changes_nothing() {
    let mut world = World::new();
    world.call(&[b"SET", b"a", b"1"]);
    world.call(&[b"RPUSH", b"l", b"x"]);
    let before = dump(&world.kv);
    let logged = world.host.logged.len();
    for (refusal, reply) in [
        (Refusal::DiskFull, "-ERR disk full\r\n"),
        (Refusal::DiskFailed, "-ERR disk write failed\r\n"),
        (
            Refusal::OutOfMemory,
            "-OOM command not allowed when used memory > 'maxmemory'.\r\n",
        ),
    ] {
        world.host.refuse = Some(refusal);
        assert_eq!(world.call(&[b"SET", b"a", b"2"]), reply);
        assert_eq!(world.call(&[b"LPOP", b"l"]), reply);
        assert_eq!(world.call(&[b"DEL", b"a"]), reply);
        // Reads go on.
        assert_eq!(world.call(&[b"GET", b"a"]), "$1\r\n1\r\n");
    }
    assert_eq!(dump(&world.kv), before);
    assert_eq!(world.host.logged.len(), logged);
}

#[test]
fn commands_that_add_data_are_refused_past_the_memory_limit() {
    let mut world = World::new();
    world.call(&[b"SET", b"a", b"1"]);
    world.host.memory.used = 2000;
    world.host.memory.peak = 2500;
    world.host.memory.limit = 1000;
    let oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
    assert_eq!(world.call(&[b"SET", b"b", b"1"]), oom);
    assert_eq!(world.call(&[b"LPUSH", b"l", b"1"]), oom);
    assert_eq!(world.call(&[b"DEL", b"a"]), ":1\r\n");
    world.call(&[b"MULTI"]);
    world.call(&[b"SET", b"c", b"1"]);
    assert_eq!(world.call(&[b"EXEC"]), oom);
    let memory = world.call(&[b"INFO", b"memory"]);
    assert!(
        memory.contains("used_memory:2000\r\nused_memory_peak:2500\r\n"),
        "{memory}"
    );
}

#[test]
fn a_transaction_is_logged_as_one_entry_of_its_writes() {
    let mut world = World::new();
    let mut input = b"MULTI\r\nSET a 1\r\nGET a\r\nINCR a\r\nRPUSH l x y\r\nEXEC\r\n".to_vec();
    input.extend_from_slice(b"MULTI\r\nGET a\r\nEXEC\r\n");
    assert_eq!(
        world.send(&input),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n+OK\r\n$1\r\n1\r\n:2\r\n:2\r\n\
         +OK\r\n+QUEUED\r\n*1\r\n$1\r\n2\r\n"
    );
    assert_eq!(world.host.logged.len(), 1);
    let (_, commands) = crate::log::decode_entry(&world.host.logged[0]).unwrap();
    assert_eq!(commands.len(), 3, "the writes only");
    // Refused whole when its entry cannot be logged.
    world.host.refuse = Some(Refusal::DiskFull);
    let reply = world.send(b"MULTI\r\nSET a 5\r\nDEL l\r\nEXEC\r\nGET a\r\n");
    assert_eq!(
        reply,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n-ERR disk full\r\n$1\r\n2\r\n"
    );
    assert!(!world.client.in_transaction());
}

#[test]
fn an_oversized_transaction_is_discarded() {
    let mut world = World::new();
    world.call(&[b"MULTI"]);
    let value = vec![b'v'; 1 << 20];
    for _ in 0..3 {
        assert_eq!(world.call(&[b"SET", b"k", &value]), "+QUEUED\r\n");
    }
    assert_eq!(
        world.call(&[b"SET", b"k", &value]),
        "-ERR transaction too large for the server's memory\r\n"
    );
    assert_eq!(
        world.call(&[b"EXEC"]),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(world.call(&[b"EXISTS", b"k"]), ":0\r\n");
}

#[test]
fn a_reply_larger_than_memory_allows_is_an_error() {
    let mut world = World::new();
    world.host.memory.room = 10_000;
    world.call(&[b"SET", b"a", &[b'x'; 4000]]);
    world.call(&[b"SET", b"b", &[b'x'; 4000]]);
    assert!(world.call(&[b"MGET", b"a", b"b"]).len() > 8000);
    assert_eq!(
        world.call(&[b"MGET", b"a", b"b", b"a"]),
        "-ERR reply too large for the server's memory\r\n"
    );
}

#[test]
fn doubles_are_printed_shortest_in_both_protocols() {
    let mut world = World::new();
    world.call(&[b"ZADD", b"z", b"0.1", b"a", b"1e21", b"b", b"1.5e-7", b"c"]);
    assert_eq!(world.call(&[b"ZSCORE", b"z", b"a"]), "$3\r\n0.1\r\n");
    assert_eq!(
        world.call(&[b"ZRANGE", b"z", b"0", b"-1", b"WITHSCORES"]),
        "*6\r\n$1\r\nc\r\n$6\r\n1.5e-7\r\n$1\r\na\r\n$3\r\n0.1\r\n$1\r\nb\r\n$5\r\n1e+21\r\n"
    );
    world.call(&[b"HELLO", b"3"]);
    assert_eq!(world.call(&[b"ZSCORE", b"z", b"a"]), ",0.1\r\n");
}

#[test]
fn unknown_commands_are_quoted_as_redis_does() {
    assert_eq!(
        super::replies(b"foo a b\r\n"),
        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
    );
    // CR and LF become spaces; a NUL ends an argument, as C's %s does.
    assert_eq!(
        super::replies(&multibulk(&[b"x\r\ny", b"a\nb", b"c\0d", b""])),
        "-ERR unknown command 'x  y', with args beginning with: 'a b' 'c' '' \r\n"
    );
    // The name is cut at 128 bytes, the arguments once they reach 128.
    let name = vec![b'n'; 200];
    let arg = vec![b'a'; 100];
    let reply = super::replies(&multibulk(&[&name, &arg, &arg, &arg]));
    let expected = format!(
        "-ERR unknown command '{}', with args beginning with: '{}' '{}' \r\n",
        "n".repeat(128),
        "a".repeat(100),
        "a".repeat(128 - 103),
    );
    assert_eq!(reply, expected);
    assert_eq!(super::replies(b"gEt a\r\nPiNg\r\n"), "$-1\r\n+PONG\r\n");
}

#[test]
fn there_is_one_database() {
    let mut world = World::new();
    assert_eq!(world.call(&[b"SELECT", b"0"]), "+OK\r\n");
    assert_eq!(
        world.call(&[b"SELECT", b"1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        world.call(&[b"CONFIG", b"GET", b"databases"]),
        "*2\r\n$9\r\ndatabases\r\n$1\r\n1\r\n"
    );
}

#[test]
fn quit_closes_after_its_reply() {
    let mut world = World::new();
    assert_eq!(
        world.send(b"PING\r\nQUIT\r\nSET a 1\r\n"),
        "+PONG\r\n+OK\r\n"
    );
    assert!(world.client.is_closed());
    assert_eq!(world.kv.len(), 0);
}

/// Random commands of every type, with the clock moving: the log always
/// replays to the same store.
#[test]
fn random_workloads_replay_from_their_log() {
    const KEYS: &[&[u8]] = &[b"a", b"b", b"c", b"l", b"s", b"h", b"z"];
    let mut rng = XorShift(0x0dd_ba11_5eed);
    let mut world = World::new();
    for step in 0..4000 {
        let key = KEYS[rng.below(KEYS.len())];
        let number = format!("{}", rng.below(20));
        let n = number.as_bytes();
        let args: Vec<&[u8]> = match rng.below(24) {
            0 => vec![b"SET", key, n],
            1 => vec![b"SET", key, n, b"PX", b"300"],
            2 => vec![b"INCRBY", key, n],
            3 => vec![b"APPEND", key, n],
            4 => vec![b"DEL", key, KEYS[rng.below(KEYS.len())]],
            5 => vec![b"LPUSH", key, n, n],
            6 => vec![b"RPOP", key, n],
            7 => vec![b"SADD", key, n],
            8 => vec![b"SPOP", key],
            9 => vec![b"SREM", key, n],
            10 => vec![b"HSET", key, n, n],
            11 => vec![b"HDEL", key, n],
            12 => vec![b"ZADD", key, n, n],
            13 => vec![b"ZPOPMIN", key, b"2"],
            14 => vec![b"EXPIRE", key, b"1"],
            15 => vec![b"PERSIST", key],
            16 => vec![b"GETSET", key, n],
            17 => vec![b"SETNX", key, n],
            18 => vec![b"MSET", key, n, KEYS[rng.below(KEYS.len())], n],
            19 => vec![b"ZADD", key, b"GT", b"CH", n, b"m"],
            20 => vec![b"MULTI"],
            21 => vec![b"EXEC"],
            22 => vec![b"SPOP", key, b"2"],
            _ => vec![b"GET", key],
        };
        world.call(&args);
        world.host.now += rng.below(200) as u64;
        if step % 500 == 0 {
            let now = world.host.now;
            world.kv.expire_due(&mut world.host, now, 3);
        }
    }
    world.call(&[b"EXEC"]);
    assert!(world.host.logged.len() > 500);
    assert_eq!(dump(&replayed(&world.host.logged)), dump(&world.kv));
}
