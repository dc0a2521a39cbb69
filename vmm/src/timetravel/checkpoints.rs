//! `ftvm record --checkpoint-every SECS`: a recording that writes the VM's
//! state into the trace every so much virtual time, for a replay to start
//! from (`--from-exit`, and going back under gdb).
//!
//! A checkpoint is taken at a settled exit boundary (as any capture of the
//! VM's state) after the exit at which virtual time passed the next
//! checkpoint's time. The first holds every page of memory; each later one
//! the pages written since the one before (KVM's log of the guest's writes
//! and guest RAM's own of this process's), then the vCPU and the core
//! (devices, exits, signature, console digest, virtual time). Its place in
//! the trace, after the records of its exit, is where a replay from it
//! goes on reading.

use std::sync::Arc;

use ft_logging::{EventSource, OutputSink};
use ftvm_core::memory::PAGE_SIZE;
use replay::Recorder;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vm_state::PageSet;

use crate::host::StopSignal;
use crate::machine::Machine;
use crate::vstate::{Resumed, RunError, RunIo, VmEnd};

/// Pages per checkpoint record: their data stays well under a record's
/// limit of 16 MiB.
const PAGES_PER_RECORD: usize = 2048;

/// Runs `machine` until it ends, as [`Machine::run`] does, writing a
/// checkpoint to `recorder` after every `every_ns` of virtual time.
pub fn run_with_checkpoints<S: EventSource>(
    machine: &mut Machine,
    recorder: &mut Recorder<S>,
    sink: &mut dyn OutputSink,
    stop: &Arc<StopSignal>,
    digest_interval: u64,
    every_ns: u64,
) -> Result<VmEnd, RunError> {
    let tracker = machine.memory_tracker();
    let mut next_ns = every_ns;
    let mut whole = true;
    loop {
        let mut pause = false;
        loop {
            let io = RunIo {
                source: recorder,
                sink,
                stop,
                digest_interval,
            };
            match machine.resume(io, pause, &mut || false)? {
                Resumed::Exit if pause || machine.virtual_time_ns() >= next_ns => pause = true,
                Resumed::Exit => {}
                Resumed::Paused => break,
                Resumed::End(end) => return Ok(end),
                other @ (Resumed::Debug(_) | Resumed::Held) => {
                    return Err(RunError::UnexpectedExit(format!("{other:?}")));
                }
            }
        }
        let failed = |error: String| RunError::Checkpoint(error);
        let state = machine.capture().map_err(|e| failed(e.to_string()))?;
        let pages: Vec<u64> = if whole {
            let pages = machine.memory().iter().flat_map(|region| {
                let first = region.start_addr().0 / PAGE_SIZE;
                first..first + region.len() / PAGE_SIZE
            });
            let pages = pages.collect();
            tracker.start().map_err(|e| failed(e.to_string()))?;
            pages
        } else {
            let written = tracker.dirty_pages().map_err(|e| failed(e.to_string()))?;
            written.iter().collect()
        };
        let pieces = pages
            .chunks(PAGES_PER_RECORD)
            .map(|chunk| {
                PageSet::capture(machine.memory(), chunk.iter().copied())
                    .map(|set| set.encode())
                    .map_err(|e| failed(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        recorder
            .checkpoint(state.exit(), whole, pieces, state.encode())
            .map_err(|e| RunError::Core(e.into()))?;
        whole = false;
        next_ns = machine.virtual_time_ns() + every_ns;
    }
}
