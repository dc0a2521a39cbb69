#!/usr/bin/env bash
# ftvm's benchmarks. Every comparison is measured side by side in one run,
# since absolute times on shared machines drift; keep results with this
# command in docs/BENCHMARKS.md.
#
# FTVM_BASE=/path/to/ftvm (another build, say the previous commit's in its
# own directory) makes record_replay and ft also run that binary,
# alternating round by round, and compare.
set -euo pipefail
cd "$(dirname "$0")/.."

# Per-exit cost through ftvm vs a bare KVM_RUN loop, and hello's boot-to-exit.
cargo bench -q -p vmm --bench exit_cost

# Record vs run, replay vs record, and trace density on ticker.
cargo bench -q -p vmm --bench record_replay

# The VM state of an idle ticker: encoded size, capture and restore times.
cargo bench -q -p vmm --bench state

# Fault tolerance: pair vs alone, the cost of --events and --metrics, the
# output rule's latency, log bandwidth, takeover time.
cargo bench -q -p vmm --bench ft

# Real clients: redis-benchmark (SET and GET, then its default test list)
# against kvstore alone vs as a pair on two hosts (network namespaces; needs
# root and redis-tools), the log's volume against what the guest took in,
# VM exits per SET and GET, and the log's size after 10 000 overwrites.
cargo bench -q -p vmm --bench kv

# Time-travel debugging: gdb's goto, reverse-stepi and reverse-continue on a
# minute of ticker, and --from-exit near the end against a whole replay.
cargo bench -q -p vmm --bench timetravel

# Re-protection: the pause at the cutover, the time to protected and the
# bytes sent, for ticker (64 MiB, and idle at 1 GiB) and for kvstore (64 MiB
# and 1 GiB) under redis-benchmark on three hosts, with the benchmark's
# throughput during a transfer against the protected pair's (needs root).
cargo bench -q -p vmm --bench reprotect
