#!/usr/bin/env python3
"""Records real Redis's replies to kvcore's reference cases.

Run against a Redis 7 server (`redis-server --port 7777 --save ''`):
    python3 reference.py 7777 > ../src/tests/reference.rs
Each case runs on an empty database, in RESP2 or (after HELLO 3, whose
reply is left out) RESP3; the replies are kept byte for byte. The cases
avoid what differs between Redis 7.0 and 7.2 or by design here (hash
order of keys and members, random choices, the version, doubles that
Redis 7.0 prints with %.17g).
"""
import socket
import sys

CASES = [
    # Strings.
    (2, ["SET a 1", "GET a", "GET nope", "SET a 2 XX", "GET a", "SET b 1 XX", "EXISTS b"]),
    (2, ["SET a 1 NX", "SET a 2 NX", "GET a", "SET a 3 GET", "SET c 1 GET", "SET a 4 NX GET"]),
    (2, ["SET a 1 EX 0", "SET a 1 EX -5", "SET a 1 PX x", "SET a 1 EX", "SET a 1 NX XX", "SET a 1 EX 10 PX 10",
         "SET a 1 KEEPTTL EX 5", "SET a 1 FOO", "SET a 1 EX 9223372036854775807", "SET a"]),
    (2, ["SET a 1 EX 100", "TTL a", "SET a 2 KEEPTTL", "TTL a", "SET a 3", "TTL a", "SET a 4 PX 100000", "TTL a"]),
    (2, ["SETNX a 1", "SETNX a 2", "GET a", "GETSET a 3", "GETSET b 4", "GET b", "SETNX a"]),
    (2, ["MSET a 1 b 2 c 3", "MGET a b nope c", "MSET a", "MSET a 1 b", "LPUSH l x", "MGET a l"]),
    (2, ["APPEND a hello", "APPEND a world", "GET a", "STRLEN a", "STRLEN nope", "LPUSH l x", "APPEND l x", "STRLEN l"]),
    (2, ["INCR n", "INCR n", "INCRBY n 10", "DECR n", "DECRBY n 5", "INCRBY n x", "DECRBY n -9223372036854775808",
         "SET s abc", "INCR s", "SET m 9223372036854775807", "INCR m", "INCRBY m -1", "DECRBY n 3",
         "SET z 01", "INCR z", "LPUSH l x", "INCR l", "INCR", "INCRBY n"]),
    (2, ["SET a 1", "DEL a b a", "DEL a", "SET a 1", "SET b 2", "UNLINK a b c", "EXISTS a b", "SET a 1", "EXISTS a a nope"]),
    (2, ["SET s 1", "LPUSH l 1", "SADD t 1", "HSET h f v", "ZADD z 1 m", "TYPE s", "TYPE l", "TYPE t", "TYPE h", "TYPE z", "TYPE nope"]),
    # Keys and expiry.
    (2, ["SET key1 1", "KEYS key*", "KEYS nomatch*", "KEYS", "SCAN 0 MATCH nomatch*", "SCAN x", "SCAN 0 COUNT 0", "SCAN 0 COUNT x", "SCAN 0 FOO bar", "SCAN 0 COUNT"]),
    (2, ["SET a 1", "EXPIRE a 100", "TTL a", "PERSIST a", "TTL a", "PERSIST a", "PERSIST nope", "TTL nope", "PTTL a", "PTTL nope"]),
    (2, ["SET a 1", "EXPIRE a 100 NX", "EXPIRE a 200 NX", "EXPIRE a 50 GT", "EXPIRE a 300 GT", "TTL a", "EXPIRE a 400 LT",
         "EXPIRE a 10 LT", "TTL a", "EXPIRE a 10 XX", "PERSIST a", "EXPIRE a 10 XX", "EXPIRE a 10 NX XX", "EXPIRE a 10 GT LT",
         "EXPIRE a 10 FOO", "EXPIRE a x", "EXPIRE a 9223372036854775807", "EXPIRE nope 10", "EXPIRE a -1", "EXISTS a"]),
    (2, ["SET a 1", "PEXPIRE a 100000", "TTL a", "EXPIREAT a 99999999999", "PERSIST a", "PEXPIREAT a 1", "EXISTS a", "PEXPIRE a"]),
    (2, ["SET a 1", "SET b 2", "DBSIZE", "FLUSHDB", "DBSIZE", "SET a 1", "FLUSHALL ASYNC", "DBSIZE", "FLUSHALL FOO", "FLUSHDB SYNC x", "DBSIZE x"]),
    (2, ["SELECT 0", "SELECT x", "SELECT -1", "SELECT"]),
    # Lists.
    (2, ["LPUSH l a b c", "RPUSH l d e", "LLEN l", "LRANGE l 0 -1", "LRANGE l 1 2", "LRANGE l -2 -1", "LRANGE l 5 10",
         "LRANGE l -100 100", "LRANGE l 2 1", "LRANGE nope 0 -1", "LRANGE l x 1", "LRANGE l 0 y", "LLEN nope"]),
    (2, ["RPUSH l a b c d", "LPOP l", "RPOP l", "LPOP l 0", "LPOP l 5", "LPOP l", "LPOP l 2", "RPOP nope", "LPOP l -1",
         "LPOP l x", "LPOP l 1 2", "EXISTS l", "SET s x", "LPOP s", "LPUSH s a", "LLEN s", "LRANGE s 0 1"]),
    # Sets.
    (2, ["SADD s a b a", "SADD s b c", "SCARD s", "SISMEMBER s a", "SISMEMBER s z", "SREM s a z", "SCARD s", "SREM s b c",
         "EXISTS s", "SCARD nope", "SMEMBERS nope", "SADD s x", "SMEMBERS s", "SET str v", "SADD str a", "SMEMBERS str", "SREM nope a"]),
    (2, ["SADD s only", "SPOP s", "SPOP s", "SADD s only", "SPOP s 0", "SPOP s 5", "SPOP nope 2", "SPOP s -1", "SPOP s 1 2", "SPOP nope"]),
    (3, ["SADD s only", "SMEMBERS s", "SMEMBERS nope", "SADD t one", "SPOP t 3", "SPOP t 2", "SPOP nope"]),
    # Hashes.
    (2, ["HSET h f1 v1 f2 v2", "HSET h f1 x f3 y", "HGET h f1", "HGET h nope", "HGET nope f", "HLEN h", "HEXISTS h f2",
         "HEXISTS h z", "HMGET h f1 nope f3", "HMGET nope a", "HDEL h f1 nope", "HLEN h", "HSET h f", "HSET h f v g",
         "HMSET h a 1", "HMSET h a", "HDEL h f2 f3 a", "EXISTS h", "HGETALL nope", "SET s x", "HGET s f", "HSET s f v"]),
    (2, ["HSET h f v", "HGETALL h"]),
    (3, ["HSET h f v", "HGETALL h", "HGETALL nope", "HMGET h f x"]),
    # Sorted sets.
    (2, ["ZADD z 1 a 2 b 3 c", "ZCARD z", "ZRANGE z 0 -1", "ZRANGE z 0 -1 WITHSCORES", "ZRANGE z 0 0 WITHSCORES",
         "ZADD z 1.5 b", "ZRANGE z 0 -1 WITHSCORES", "ZSCORE z b", "ZSCORE z nope", "ZADD z x a", "ZADD z 1", "ZADD z 1 a 2",
         "ZADD z NX XX 1 a", "ZADD z GT LT 1 a", "ZADD z GT NX 1 a", "ZADD z NX 9 a", "ZSCORE z a", "ZADD z XX 9 new",
         "ZSCORE z new", "ZADD z CH 9 a 1 b 7 d", "ZADD z GT 1 a", "ZADD z LT 1 a", "ZSCORE z a", "ZRANGE z 0 -1 REV",
         "ZRANGE z 0 x", "ZRANGE z 0 -1 FOO", "ZREM z a nope", "ZCARD z", "ZCARD nope", "ZADD z inf e -inf f", "ZRANGE z 0 -1 WITHSCORES",
         "ZADD z nan g", "ZADD z 1e400 g", "ZADD z -2.5 neg 0.5 half", "ZRANGE z 0 1 WITHSCORES"]),
    (2, ["ZADD z 1 a 2 b 3 c", "ZPOPMIN z", "ZPOPMIN z 5", "ZPOPMIN z", "ZPOPMIN nope", "ZPOPMIN nope 3", "ZADD z 1 a",
         "ZPOPMIN z 0", "ZPOPMIN z -1", "ZPOPMIN z 1 2", "ZADD z 4 d", "ZPOPMIN z 1", "EXISTS z"]),
    (3, ["ZADD z 1 a 2 b 3 c", "ZRANGE z 0 -1 WITHSCORES", "ZSCORE z a", "ZPOPMIN z", "ZPOPMIN z 1", "ZPOPMIN z 5", "ZPOPMIN nope",
         "ZPOPMIN nope 2", "ZADD z 0.5 h", "ZSCORE z h", "ZADD z inf i", "ZSCORE z i"]),
    # Transactions.
    (2, ["MULTI", "SET a 1", "INCR a", "GET a", "EXEC", "GET a"]),
    (2, ["MULTI", "MULTI", "SET a 1", "DISCARD", "GET a", "DISCARD", "EXEC"]),
    (2, ["MULTI", "SET a 1", "NOSUCH x", "SET b", "EXEC", "EXISTS a"]),
    (2, ["SET s x", "MULTI", "INCR s", "SET t 1", "LPUSH s a", "EXEC", "GET t"]),
    (2, ["MULTI", "EXEC", "MULTI", "PING", "ECHO hi", "DBSIZE", "EXEC"]),
    (3, ["MULTI", "SET a 1", "GET a", "HGETALL nope", "EXEC"]),
    # Connection and server.
    (2, ["PING", "PING hello", "PING a b", "ECHO hi", "ECHO", "ECHO a b"]),
    (3, ["PING", "GET nope", "LPOP nope 2", "MGET a"]),
    (2, ["NOSUCH", "NOSUCH a b", "nosuch 'x'", "GET", "GET a b"]),
    (2, ["HELLO 4", "HELLO x", "HELLO 3 FOO", "HELLO 3 SETNAME", "HELLO 3 SETNAME a\\ b"]),
    (2, ["CLIENT GETNAME", "CLIENT SETNAME myname", "CLIENT GETNAME", "CLIENT SETNAME bad\\ name", "CLIENT SETNAME",
         "CLIENT FOO", "CLIENT", "CLIENT GETNAME x"]),
    (2, ["CONFIG GET appendonly", "CONFIG GET nosuchparam", "CONFIG GET", "CONFIG FOO", "CONFIG SET nosuch 1"]),
    (3, ["CONFIG GET appendonly"]),
    (2, ["COMMAND FOO", "INFO nosuchsection"]),
]


def encode(command):
    args = []
    current = ""
    escaped = False
    for ch in command:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == " ":
            args.append(current)
            current = ""
        else:
            current += ch
    args.append(current)
    out = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return args, out


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.need(len(self.buf) + 1)
        i = self.buf.index(b"\r\n") + 2
        return i

    def reply(self, start=0):
        """Length of the reply starting at `start` in the buffer."""
        while True:
            try:
                return self._reply(start)
            except IndexError:
                self.need(len(self.buf) + 1)

    def _reply(self, start):
        if start >= len(self.buf):
            raise IndexError
        end = self.buf.find(b"\r\n", start)
        if end < 0:
            raise IndexError
        kind = self.buf[start:start + 1]
        head = self.buf[start + 1:end]
        after = end + 2
        if kind in b"+-:_,#(":
            return after
        if kind in b"$=!":
            n = int(head)
            if n < 0:
                return after
            if after + n + 2 > len(self.buf):
                raise IndexError
            return after + n + 2
        if kind in b"*~>%|":
            n = int(head)
            if n < 0:
                return after
            if kind in b"%|":
                n *= 2
            pos = after
            for _ in range(n):
                pos = self._reply(pos)
            return pos
        raise ValueError(kind)

    def take(self):
        end = self.reply()
        out, self.buf = self.buf[:end], self.buf[end:]
        return out


def rust_bytes(data):
    out = 'b"'
    for byte in data:
        ch = chr(byte)
        if ch == '"':
            out += '\\"'
        elif ch == "\\":
            out += "\\\\"
        elif ch == "\r":
            out += "\\r"
        elif ch == "\n":
            out += "\\n"
        elif 32 <= byte < 127:
            out += ch
        else:
            out += "\\x%02x" % byte
    return out + '"'


def main():
    port = int(sys.argv[1])
    print("// Generated by tests-data/reference.py from a real Redis server; see there.")
    print("// Each case: protocol, commands, the replies to them byte for byte.")
    print("")
    print("/// A case: the protocol (2 or 3), the commands, Redis's replies.")
    print("pub(crate) type Case = (u8, &'static [&'static [&'static [u8]]], &'static [u8]);")
    print("")
    print("pub(crate) const CASES: &[Case] = &[")
    for proto, commands in CASES:
        sock = socket.create_connection(("127.0.0.1", port))
        reader = Reader(sock)
        sock.sendall(encode("FLUSHALL")[1])
        reader.take()
        if proto == 3:
            sock.sendall(encode("HELLO 3")[1])
            reader.take()
        replies = b""
        encoded = []
        for command in commands:
            args, data = encode(command)
            encoded.append(args)
            sock.sendall(data)
            replies += reader.take()
        sock.close()
        args_text = ", ".join(
            "&[" + ", ".join(rust_bytes(a.encode()) for a in args) + "]" for args in encoded
        )
        print("    (")
        print("        %d," % proto)
        print("        &[%s]," % args_text)
        print("        %s," % rust_bytes(replies))
        print("    ),")
    print("];")


main()
