#!/usr/bin/env bash
# Three "hosts" and a client on one machine: network namespaces NAME-a
# (10.99.0.1, the primary's host), NAME-b (10.99.0.2, the backup's host),
# NAME-d (10.99.0.4, a standby's host) and NAME-c (10.99.0.3, a client), each
# linked by a veth pair to one bridge in another namespace, NAME-sw (the
# switch), so the host's own network is never touched. Each host also has a
# TAP device, ftvm0, for the guest's network card (--net tap=ftvm0), bridged
# to the same switch: the guest LAN is 10.0.0.0/24, where the client is
# 10.0.0.1 and the guest takes 10.0.0.2 (--cmdline ip=10.0.0.2/24).
#
#   two-hosts.sh up NAME      create the namespaces (replacing stale ones)
#   two-hosts.sh down NAME    remove them (nothing left if they are absent)
#   two-hosts.sh pair NAME [ftvm options...]
#                             up, then a backup of ftvm in NAME-b and a
#                             primary in NAME-a with the given options
#                             (default: --kernel ticker); waits for both and
#                             removes everything on exit, Ctrl-C or SIGTERM
#   two-hosts.sh trio NAME [ftvm options...]
#                             as pair, with a standby (backup --join) in
#                             NAME-d, and every side re-protecting itself with
#                             the other two hosts (--reprotect): kill the
#                             live side's host (takeover.sh kill NAME HOST)
#                             and the guest goes on, protected again
#
# FTVM names the ftvm binary (default: target/release/ftvm, else target/debug/ftvm).
# NAME is at most 8 characters: interface names have 15. Needs root.
set -euo pipefail

SUBNET=10.99.0
PORT=7000
TAP=ftvm0
CLIENT_LAN_ADDRESS=10.0.0.1/24

usage() {
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_name() {
    [[ "$1" =~ ^[a-z0-9]{1,8}$ ]] || { echo "two-hosts.sh: NAME must be 1 to 8 lowercase letters or digits" >&2; exit 2; }
}

down() {
    local name=$1 ns
    for ns in "$name-a" "$name-b" "$name-c" "$name-d" "$name-sw"; do
        # Whatever still runs in a host goes with it.
        if ip netns pids "$ns" >/dev/null 2>&1; then
            ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
            ip netns delete "$ns" 2>/dev/null || true
        fi
    done
}

up() {
    local name=$1 host address
    down "$name"
    ip netns add "$name-sw"
    ip -n "$name-sw" link add br0 type bridge
    ip -n "$name-sw" link set br0 up
    ip -n "$name-sw" link set lo up
    for host in a b c d; do
        case $host in a) address=1 ;; b) address=2 ;; c) address=3 ;; d) address=4 ;; esac
        ip netns add "$name-$host"
        ip link add "$name-$host" type veth peer name eth0 netns "$name-$host"
        ip link set "$name-$host" netns "$name-sw"
        ip -n "$name-sw" link set "$name-$host" master br0 up
        ip -n "$name-$host" addr add "$SUBNET.$address/24" dev eth0
        ip -n "$name-$host" link set eth0 up
        ip -n "$name-$host" link set lo up
    done
    ip -n "$name-c" addr add "$CLIENT_LAN_ADDRESS" dev eth0
    for host in a b d; do
        guest_lan "$name" "$host"
    done
}

# The guest's network on host NAME-HOST: its TAP and a second link to the
# switch, on one bridge, so the guest is on the switch like a machine.
guest_lan() {
    local name=$1 host=$2 ns="$1-$2"
    ip -n "$ns" tuntap add dev "$TAP" mode tap
    ip -n "$ns" link add br1 type bridge
    ip link add "$name-${host}l" type veth peer name lan netns "$ns"
    ip link set "$name-${host}l" netns "$name-sw"
    ip -n "$name-sw" link set "$name-${host}l" master br0 up
    ip -n "$ns" link set "$TAP" master br1 up
    ip -n "$ns" link set lan master br1 up
    ip -n "$ns" link set br1 up
}

ftvm_binary() {
    if [ -n "${FTVM:-}" ]; then
        echo "$FTVM"
    elif [ -x target/release/ftvm ]; then
        echo "$PWD/target/release/ftvm"
    else
        echo "$PWD/target/debug/ftvm"
    fi
}

# The hosts of NAME, a fresh go-live flag and key in a scratch directory,
# all removed on exit: sets ftvm (the binary), work (the directory) and
# common (the options every side shares).
start_hosts() {
    local name=$1
    ftvm=$(ftvm_binary)
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand NAME now: the trap runs after return
    trap "down '$name'; rm -rf '$work'" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    up "$name"
    "$ftvm" arbiter init "$work/arbiter" >/dev/null
    head -c 32 /dev/urandom >"$work/key"
    common=(--arbiter "$work/arbiter" --auth-key "$work/key")
}

pair() {
    local name=$1
    shift
    [ $# -gt 0 ] || set -- --kernel ticker
    local backup primary backup_status=0 primary_status=0
    start_hosts "$name"
    ip netns exec "$name-b" "$ftvm" backup --listen "$SUBNET.2:$PORT" "${common[@]}" "$@" \
        > >(sed 's/^/backup  | /') 2>&1 &
    backup=$!
    ip netns exec "$name-a" "$ftvm" primary --backup "$SUBNET.2:$PORT" "${common[@]}" "$@" \
        > >(sed 's/^/primary | /') 2>&1 &
    primary=$!
    wait "$primary" || primary_status=$?
    wait "$backup" || backup_status=$?
    echo "two-hosts.sh: primary exited with $primary_status, backup with $backup_status"
    [ "$primary_status" -eq 0 ] || [ "$backup_status" -eq 0 ]
}

# The options among "$@" that describe this host's side of the guest's
# devices (--disk, --net): a standby takes those, and gets the rest (kernel,
# memory, command line) from the live side.
device_options() {
    while [ $# -gt 0 ]; do
        case $1 in
            --disk | --net) [ $# -ge 2 ] && printf '%s\0%s\0' "$1" "$2"; shift ;;
            --disk=* | --net=*) printf '%s\0' "$1" ;;
        esac
        shift
    done
}

trio() {
    local name=$1
    shift
    [ $# -gt 0 ] || set -- --kernel ticker
    local standby backup primary primary_status=0 backup_status=0 standby_status=0
    start_hosts "$name"
    local a=$SUBNET.1:$PORT b=$SUBNET.2:$PORT d=$SUBNET.4:$PORT devices=()
    mapfile -d '' devices < <(device_options "$@")
    ip netns exec "$name-d" "$ftvm" backup --join --listen "$d" --reprotect "$a,$b" "${common[@]}" \
        "${devices[@]}" > >(sed 's/^/standby | /') 2>&1 &
    standby=$!
    ip netns exec "$name-b" "$ftvm" backup --listen "$b" --reprotect "$d,$a" "${common[@]}" "$@" \
        > >(sed 's/^/backup  | /') 2>&1 &
    backup=$!
    ip netns exec "$name-a" "$ftvm" primary --backup "$b" --reprotect "$d,$b" "${common[@]}" "$@" \
        > >(sed 's/^/primary | /') 2>&1 &
    primary=$!
    wait "$primary" || primary_status=$?
    wait "$backup" || backup_status=$?
    # A standby nobody ever sent the guest to (the flag never left its first
    # generation) waits for a live side that will not come: stop it.
    if [ "$("$ftvm" arbiter status "$work/arbiter")" = "generation 0, no owner" ]; then
        kill -TERM "$standby" 2>/dev/null || true
    fi
    wait "$standby" || standby_status=$?
    echo "two-hosts.sh: primary exited with $primary_status, backup with $backup_status, standby with $standby_status"
    [ "$primary_status" -eq 0 ] || [ "$backup_status" -eq 0 ] || [ "$standby_status" -eq 0 ]
}

[ $# -ge 2 ] || usage
command=$1
name=$2
check_name "$name"
shift 2
case $command in
    up)
        # A half-made set of hosts is removed, also when interrupted.
        trap 'down "$name"' ERR
        trap 'down "$name"; exit 130' INT
        trap 'down "$name"; exit 143' TERM
        up "$name"
        ;;
    down) down "$name" ;;
    pair) pair "$name" "$@" ;;
    trio) trio "$name" "$@" ;;
    *) usage ;;
esac
