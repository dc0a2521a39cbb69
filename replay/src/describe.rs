//! Records in the words of divergence messages and summaries.

use ft_logging::{Event, Record};

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
