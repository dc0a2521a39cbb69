//! Records and end reasons in the words of divergence messages and summaries.

use ft_logging::{EndReason, Event, Record};

pub(crate) fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::WallClock { .. } => "the wall clock",
        Event::Time { .. } => "a time sample",
        Event::SerialIn(_) => "serial input",
        Event::MsrRead { .. } => "an MSR value",
        Event::DiskDone { .. } => "a disk completion",
        Event::NetRx(_) => "a received frame",
    }
}

pub(crate) fn record(record: &Record) -> String {
    match record {
        Record::Event { exit, event, .. } => format!("{} at exit {exit}", event_kind(event)),
        Record::Output { exit, .. } => format!("a console digest at exit {exit}"),
        Record::State { exit, .. } => format!("a state digest at exit {exit}"),
        Record::CheckpointPages { exit, .. } | Record::Checkpoint { exit, .. } => {
            format!("a checkpoint at exit {exit}")
        }
        Record::End(end) => format!("the end record (after exit {})", end.exit),
    }
}

pub(crate) fn end_reason(reason: &EndReason) -> String {
    match reason {
        EndReason::GuestExit(value) => format!("the guest exited with {value}"),
        EndReason::Reset => "the guest reset the machine".into(),
        EndReason::Halted => "the guest halted with interrupts off".into(),
        EndReason::Idle => "the guest halted with nothing left to wake it".into(),
        EndReason::TripleFault => "the guest triple-faulted".into(),
        EndReason::Stopped(stop) => format!("stopped: {stop}"),
        EndReason::Failed(message) => format!("ftvm failed: {message}"),
    }
}
