#!/usr/bin/env bash
# Records tests/traces/kvstore-log-full.trace (issue 14): kvstore on a
# 16 KiB disk under `ftvm record`, one client pipelining 20 SETs of 1 KiB
# overwriting one key and a GET (the log fills in the middle: the first
# SETs are acknowledged, the rest refused with `ERR disk full`), then PING
# on a new connection, then SIGTERM. Needs root (network namespaces).
# Run from the repository root: tests/traces/kvstore-log-full.sh
#
# The committed trace was recorded with the kvstore of commit afe1e8b (the
# issue 14 fix; its trace format 2 then set to 3, the records being the
# same). Today's kvstore compacts its log (overwrites never fill it) and
# needs a disk of at least 64 sectors, so this script now records another
# run: the trace keeps the kernel it was recorded with, and replays as is.
set -euo pipefail
ftvm=${FTVM:-target/debug/ftvm}
name=kvtrace
work=$(mktemp -d)
trap 'scripts/two-hosts.sh down "$name"; rm -rf "$work"' EXIT
scripts/two-hosts.sh up "$name"
truncate -s 16K "$work/kv.img"
ip netns exec "$name-a" "$ftvm" record --trace "$work/kvstore-log-full.trace" \
    --kernel kvstore --disk "$work/kv.img" --net tap=ftvm0 --cmdline ip=10.0.0.2/24 \
    >"$work/console" &
ftvm_pid=$!
until grep -q listening "$work/console"; do sleep 0.1; done
ip netns exec "$name-c" python3 - <<'PY'
import socket
def request(*args):
    out = b"*%d\r\n" % len(args)
    for arg in args:
        out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    return out
def replies(sock, count):
    data = b""
    while data.count(b"\r\n") < count:
        data += sock.recv(65536)
    return data
with socket.create_connection(("10.0.0.2", 6379), timeout=30) as sock:
    batch = b"".join(request(b"SET", b"k", b"%04d" % i + b"v" * 1020) for i in range(20))
    sock.sendall(batch + request(b"GET", b"k"))
    # 20 one-line replies, then the bulk reply's two lines.
    print(replies(sock, 22).decode(errors="replace")[:400])
with socket.create_connection(("10.0.0.2", 6379), timeout=30) as sock:
    sock.sendall(request(b"PING"))
    print(replies(sock, 1))
PY
kill -TERM "$ftvm_pid"
wait "$ftvm_pid" || true
cp "$work/kvstore-log-full.trace" tests/traces/
cp "$work/console" tests/traces/kvstore-log-full.console
