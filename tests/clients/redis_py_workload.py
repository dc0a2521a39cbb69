#!/usr/bin/env python3
"""A workload for kvstore through redis-py, with its default settings.

Usage: redis_py_workload.py HOST [PORT]
Pipelines with and without transactions, multi-key commands, every data
type, expiry checked against the clock, 1 MiB values. Exits 0 when every
result is as Redis gives it, 1 (with the failed check on stderr) otherwise.
"""
import sys
import time

import redis


def check(got, expected, what):
    if got != expected:
        print(f"{what}: got {got!r}, expected {expected!r}", file=sys.stderr)
        sys.exit(1)


def main():
    host = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 6379
    # Default settings: RESP3 (redis-py 8), a connection pool; a generous
    # timeout since the guest's instructions are emulated.
    r = redis.Redis(host=host, port=port, socket_timeout=120)
    check(r.ping(), True, "PING")
    check(r.connection_pool.connection_kwargs.get("protocol"), None, "default protocol")
    check(r.execute_command("HELLO", 3)[b"proto"], 3, "HELLO 3")
    check(r.flushall(), True, "FLUSHALL")

    # Strings.
    check(r.set("s", "v"), True, "SET")
    check(r.get("s"), b"v", "GET")
    check(r.set("s", "w", nx=True), None, "SET NX on an existing key")
    check(r.set("s", "x", xx=True, get=True), b"v", "SET XX GET")
    check(r.setnx("fresh", 1), True, "SETNX")
    check(r.getset("fresh", 2), b"1", "GETSET")
    check(r.append("s", "yz"), 3, "APPEND")
    check(r.strlen("s"), 3, "STRLEN")
    check(r.incr("n"), 1, "INCR")
    check(r.incrby("n", 41), 42, "INCRBY")
    check(r.decr("n"), 41, "DECR")
    check(r.decrby("n", 40), 1, "DECRBY")
    try:
        r.incr("s")
        check("no error", "an error", "INCR of a non-integer")
    except redis.ResponseError as error:
        check(str(error), "value is not an integer or out of range", "INCR error")

    # Multi-key commands.
    check(r.mset({"m1": "a", "m2": "b", "m3": "c"}), True, "MSET")
    check(r.mget("m1", "nope", "m3"), [b"a", None, b"c"], "MGET")
    check(r.exists("m1", "m2", "nope"), 2, "EXISTS")
    check(r.delete("m1", "m2", "nope"), 2, "DEL")
    check(r.unlink("m3"), 1, "UNLINK")

    # Lists, sets, hashes, sorted sets.
    check(r.rpush("l", *range(5)), 5, "RPUSH")
    check(r.lpush("l", "a", "b"), 7, "LPUSH")
    check(r.lrange("l", 0, -1), [b"b", b"a", b"0", b"1", b"2", b"3", b"4"], "LRANGE")
    check(r.lpop("l"), b"b", "LPOP")
    check(r.rpop("l", 2), [b"4", b"3"], "RPOP count")
    check(r.llen("l"), 4, "LLEN")
    check(r.sadd("set", "a", "b", "c", "a"), 3, "SADD")
    check(r.smembers("set"), {b"a", b"b", b"c"}, "SMEMBERS")
    check(r.srem("set", "a", "z"), 1, "SREM")
    check(r.scard("set"), 2, "SCARD")
    check(r.spop("set") in (b"b", b"c"), True, "SPOP")
    check(r.hset("h", mapping={"f1": "v1", "f2": "v2"}), 2, "HSET")
    check(r.hget("h", "f1"), b"v1", "HGET")
    check(r.hgetall("h"), {b"f1": b"v1", b"f2": b"v2"}, "HGETALL")
    check(r.hdel("h", "f1", "nope"), 1, "HDEL")
    check(r.hlen("h"), 1, "HLEN")
    check(r.zadd("z", {"a": 1, "b": 2.5, "c": -0.5}), 3, "ZADD")
    check(r.zrange("z", 0, -1, withscores=True), [(b"c", -0.5), (b"a", 1.0), (b"b", 2.5)], "ZRANGE")
    check(r.zpopmin("z"), [(b"c", -0.5)], "ZPOPMIN")
    check(r.zcard("z"), 2, "ZCARD")
    check({r.type(k) for k in ["s", "l", "set", "h", "z"]},
          {b"string", b"list", b"set", b"hash", b"zset"}, "TYPE")
    check(sorted(r.keys("[lhz]")), [b"h", b"l", b"z"], "KEYS")
    check(sorted(r.scan_iter(match="m*", count=2)), [], "SCAN MATCH")
    check(len(list(r.scan_iter(count=3))), r.dbsize(), "SCAN all")

    # Pipelines, as a transaction (the default) and not.
    pipe = r.pipeline()
    pipe.set("p", 1).incr("p").get("p").lpush("pl", "x").hset("ph", "f", "v")
    check(pipe.execute(), [True, 2, b"2", 1, 1], "transaction pipeline")
    pipe = r.pipeline(transaction=False)
    for i in range(50):
        pipe.set(f"key:{i}", i)
    pipe.mget([f"key:{i}" for i in range(50)])
    results = pipe.execute()
    check(results[:50], [True] * 50, "pipelined SETs")
    check(results[50], [str(i).encode() for i in range(50)], "pipelined MGET")
    pipe = r.pipeline()
    pipe.set("t", 1).lpush("t", "x")
    try:
        pipe.execute()
        check("no error", "an error", "WRONGTYPE inside a transaction")
    except redis.ResponseError as error:
        check("WRONGTYPE" in str(error), True, "WRONGTYPE inside a transaction")
    check(r.get("t"), b"1", "the transaction's other command ran")

    # Expiry on the guest's clock.
    check(r.set("e1", "v", ex=2), True, "SET EX")
    check(r.ttl("e1") in (1, 2), True, "TTL")
    check(r.set("e2", "v", px=300), True, "SET PX")
    check(0 < r.pttl("e2") <= 300, True, "PTTL")
    check(r.set("e3", "v"), True, "SET")
    check(r.expire("e3", 100), True, "EXPIRE")
    check(r.persist("e3"), True, "PERSIST")
    check(r.ttl("e3"), -1, "TTL after PERSIST")
    check(r.pexpire("e3", 200), True, "PEXPIRE")
    time.sleep(0.8)
    check(r.get("e2"), None, "a key past its PX")
    check(r.exists("e3"), 0, "a key past its PEXPIRE")
    check(r.ttl("e2"), -2, "TTL of an expired key")
    time.sleep(1.6)
    check(r.get("e1"), None, "a key past its EX")

    # Values of 1 MiB.
    big = bytes(range(256)) * 4096
    check(r.set("big", big), True, "SET 1 MiB")
    check(r.get("big") == big, True, "GET 1 MiB")
    check(r.strlen("big"), 1 << 20, "STRLEN 1 MiB")

    # What INFO and CONFIG report.
    info = r.info()
    check(info["redis_version"].startswith("7."), True, "INFO server")
    check(info["aof_enabled"], 1, "INFO persistence")
    check(info["db0"]["keys"], r.dbsize(), "INFO keyspace")
    check(r.config_get("appendonly"), {"appendonly": "yes"}, "CONFIG GET")
    check(r.client_setname("workload"), True, "CLIENT SETNAME")
    check(r.client_getname(), "workload", "CLIENT GETNAME")

    # And RESP2, as older clients speak it.
    r2 = redis.Redis(host=host, port=port, protocol=2, socket_timeout=120)
    check(r2.zrange("z", 0, -1, withscores=True), [(b"a", 1.0), (b"b", 2.5)], "RESP2 ZRANGE")
    check(r2.hgetall("ph"), {b"f": b"v"}, "RESP2 HGETALL")
    print("redis-py workload: ok", r.dbsize(), "keys")


main()
