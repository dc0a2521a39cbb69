# gdb commands for debugging an ftvm replay (`ftvm replay TRACE --gdb ADDR:PORT`).
# Load with `source scripts/ftvm.gdb` (or from ~/.gdbinit).

define goto
  monitor goto $arg0
  # The replay moved under gdb: forget the registers and frames it cached.
  maintenance flush register-cache
end
document goto
Usage: goto EXIT
Moves the replay to just after exit EXIT (forwards, or backwards from the
start of the trace or a checkpoint) and refreshes gdb's view of it.
end

define when
  monitor when
end
document when
Shows the exit and instruction the replay is at, and its virtual time.
end
