#!/usr/bin/env bash
# Fails the primary's host of a pair made by two-hosts.sh (NAME-a).
#
#   takeover.sh kill NAME     SIGKILL every process of the primary's host
#   takeover.sh cut NAME      drop the primary host's link to the switch (the
#                             processes keep running, partitioned)
#   takeover.sh heal NAME     bring that link back
#
# Needs root.
set -euo pipefail

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -eq 2 ] || usage
name=$2
ip netns pids "$name-a" >/dev/null 2>&1 || { echo "takeover.sh: no host $name-a (run two-hosts.sh up $name)" >&2; exit 1; }
case $1 in
    kill) ip netns pids "$name-a" | xargs -r kill -9 ;;
    cut) ip -n "$name-sw" link set "$name-a" down ;;
    heal) ip -n "$name-sw" link set "$name-a" up ;;
    *) usage ;;
esac
