#!/usr/bin/env bash
# Fails a host of a pair (or trio) made by two-hosts.sh: the primary's,
# NAME-a, unless HOST names another (b, the backup's; d, the standby's).
#
#   takeover.sh kill NAME [HOST]   SIGKILL every process of the host
#   takeover.sh cut NAME [HOST]    drop the host's link to the switch (the
#                                  processes keep running, partitioned)
#   takeover.sh heal NAME [HOST]   bring that link back
#
# Needs root.
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -eq 2 ] || [ $# -eq 3 ] || usage
name=$2
host=${3:-a}
[[ "$host" =~ ^[abd]$ ]] || usage
ip netns pids "$name-$host" >/dev/null 2>&1 || { echo "takeover.sh: no host $name-$host (run two-hosts.sh up $name)" >&2; exit 1; }
case $1 in
    kill) ip netns pids "$name-$host" | xargs -r kill -9 ;;
    cut) ip -n "$name-sw" link set "$name-$host" down ;;
    heal) ip -n "$name-sw" link set "$name-$host" up ;;
    *) usage ;;
esac
