//! `ftvm trace inspect`: what a trace holds, in a few lines.

use std::fmt;
use std::io::Read;
use std::path::Path;

use ft_logging::{DiskInfo, End, Event, NetInfo, Record};

use crate::trace::hex;
use crate::{Position, TraceError, TraceReader};

/// The kinds of record, as a summary counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The wall clock at boot.
    WallClock,
    /// Time samples.
    Time,
    /// Serial input.
    SerialIn,
    /// MSR values.
    MsrRead,
    /// Disk completions.
    DiskDone,
    /// Received frames.
    NetRx,
    /// Console digests.
    Output,
    /// State digests.
    State,
    /// Checkpoints: their pages and machine states.
    Checkpoint,
    /// The end record.
    End,
}

impl RecordKind {
    /// Every kind, in the order of the summary.
    pub const ALL: [RecordKind; 10] = [
        RecordKind::WallClock,
        RecordKind::Time,
        RecordKind::SerialIn,
        RecordKind::MsrRead,
        RecordKind::DiskDone,
        RecordKind::NetRx,
        RecordKind::Output,
        RecordKind::State,
        RecordKind::Checkpoint,
        RecordKind::End,
    ];

    /// The kind of `record`.
    pub fn of(record: &Record) -> Self {
        match record {
            Record::Event { event, .. } => match event {
                Event::WallClock { .. } => RecordKind::WallClock,
                Event::Time { .. } => RecordKind::Time,
                Event::SerialIn(_) => RecordKind::SerialIn,
                Event::MsrRead { .. } => RecordKind::MsrRead,
                Event::DiskDone { .. } => RecordKind::DiskDone,
                Event::NetRx(_) => RecordKind::NetRx,
            },
            Record::Output { .. } => RecordKind::Output,
            Record::State { .. } => RecordKind::State,
            Record::CheckpointPages { .. } | Record::Checkpoint { .. } => RecordKind::Checkpoint,
            Record::End(_) => RecordKind::End,
        }
    }

    /// Its name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::WallClock => "wall clock",
            RecordKind::Time => "time",
            RecordKind::SerialIn => "serial input",
            RecordKind::MsrRead => "MSR read",
            RecordKind::DiskDone => "disk completion",
            RecordKind::NetRx => "received frame",
            RecordKind::Output => "console digest",
            RecordKind::State => "state digest",
            RecordKind::Checkpoint => "checkpoint",
            RecordKind::End => "end",
        }
    }
}

/// Records of one kind in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindCount {
    /// Records of the kind.
    pub records: u64,
    /// Their bytes, framing included.
    pub bytes: u64,
}

/// What a trace holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    /// The platform version it was recorded on.
    pub platform: String,
    /// The kernel's name.
    pub kernel_name: String,
    /// The kernel's size.
    pub kernel_bytes: usize,
    /// The kernel's SHA-256.
    pub kernel_sha256: [u8; 32],
    /// Guest RAM in MiB.
    pub mem_mib: u32,
    /// The guest's command line.
    pub cmdline: String,
    /// The disk, if any.
    pub disk: Option<DiskInfo>,
    /// The network card, if any.
    pub net: Option<NetInfo>,
    /// CPUID leaves in the CPU model.
    pub cpuid_leaves: usize,
    /// Exits between state digests.
    pub digest_interval: u64,
    /// Magic, version and header.
    pub header_bytes: u64,
    /// Per kind, in the order of [`RecordKind::ALL`].
    pub kinds: [KindCount; RecordKind::ALL.len()],
    /// Records after the header.
    pub records: u64,
    /// The whole file.
    pub bytes: u64,
    /// The last time sample, in virtual nanoseconds.
    pub duration_ns: Option<u64>,
    /// The checkpoints, in order.
    pub checkpoints: Vec<CheckpointSummary>,
    /// The end record.
    pub end: End,
}

/// One checkpoint of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// The exit it was taken after.
    pub exit: u64,
    /// The last time sample before it, in virtual nanoseconds.
    pub time_ns: u64,
    /// Whether its pages are all of memory (else those changed since the
    /// checkpoint before).
    pub whole: bool,
    /// Its records' bytes, pages included.
    pub bytes: u64,
    /// Where its closing record starts: a reader opened here
    /// ([`TraceReader::open_at`]) goes on from the checkpoint.
    pub start: Position,
}

impl TraceSummary {
    /// Reads the rest of the trace `reader` holds.
    pub fn read<R: Read>(mut reader: TraceReader<R>) -> Result<Self, TraceError> {
        let header_bytes = reader.position().offset;
        let mut kinds = [KindCount::default(); RecordKind::ALL.len()];
        let mut duration_ns = None;
        let mut end = None;
        let mut checkpoints = Vec::new();
        // Bytes of the checkpoint whose pages are being read.
        let mut checkpoint_bytes = 0;
        loop {
            let start = reader.position();
            let Some(record) = reader.next_record()? else {
                break;
            };
            let bytes = reader.position().offset - start.offset;
            let count = &mut kinds[RecordKind::of(&record) as usize];
            count.records += 1;
            count.bytes += bytes;
            match record {
                Record::Event {
                    event: Event::Time { ns },
                    ..
                } => duration_ns = Some(ns),
                Record::CheckpointPages { .. } => checkpoint_bytes += bytes,
                Record::Checkpoint { exit, whole, .. } => {
                    checkpoints.push(CheckpointSummary {
                        exit,
                        time_ns: duration_ns.unwrap_or(0),
                        whole,
                        bytes: checkpoint_bytes + bytes,
                        start,
                    });
                    checkpoint_bytes = 0;
                }
                Record::End(last) => end = Some(last),
                _ => {}
            }
        }
        let header = reader.header();
        Ok(Self {
            platform: header.platform.clone(),
            kernel_name: header.kernel_name.clone(),
            kernel_bytes: header.kernel.len(),
            kernel_sha256: header.kernel_sha256,
            mem_mib: header.mem_mib,
            cmdline: header.cmdline.clone(),
            disk: header.disk,
            net: header.net,
            cpuid_leaves: header.cpuid.len(),
            digest_interval: header.digest_interval,
            header_bytes,
            kinds,
            records: reader.position().record,
            bytes: reader.position().offset,
            duration_ns,
            checkpoints,
            // The reader ends only after the End record.
            end: end.expect("a trace read to its end has an end record"),
        })
    }
}

/// Reads the whole trace at `path` into a summary.
pub fn inspect(path: &Path) -> Result<TraceSummary, TraceError> {
    TraceSummary::read(TraceReader::open(path)?)
}

impl fmt::Display for TraceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "platform         {}", self.platform)?;
        writeln!(
            f,
            "kernel           {} ({} bytes, SHA-256 {})",
            self.kernel_name,
            self.kernel_bytes,
            hex(&self.kernel_sha256)
        )?;
        writeln!(f, "memory           {} MiB", self.mem_mib)?;
        writeln!(f, "command line     {}", self.cmdline)?;
        let or_none = |device: Option<String>| device.unwrap_or_else(|| "none".into());
        writeln!(
            f,
            "disk             {}",
            or_none(self.disk.map(|d| d.to_string()))
        )?;
        writeln!(
            f,
            "network card     {}",
            or_none(self.net.map(|n| n.to_string()))
        )?;
        writeln!(f, "CPUID leaves     {}", self.cpuid_leaves)?;
        match self.digest_interval {
            0 => writeln!(f, "state digests    none")?,
            n => writeln!(f, "state digests    every {n} exits")?,
        }
        writeln!(f, "exits            {}", self.end.exit)?;
        match self.duration_ns {
            Some(ns) => writeln!(
                f,
                "duration         {}.{:09} s of virtual time",
                ns / 1_000_000_000,
                ns % 1_000_000_000
            )?,
            None => writeln!(f, "duration         unknown (no time sample)")?,
        }
        writeln!(
            f,
            "end              {}, exit status {}",
            self.end.reason, self.end.status
        )?;
        writeln!(
            f,
            "records          {} in {} bytes, after a header of {} bytes",
            self.records, self.bytes, self.header_bytes
        )?;
        writeln!(f, "  {:<15} {:>10} {:>12}", "kind", "records", "bytes")?;
        for (kind, count) in RecordKind::ALL.iter().zip(&self.kinds) {
            writeln!(
                f,
                "  {:<15} {:>10} {:>12}",
                kind.name(),
                count.records,
                count.bytes
            )?;
        }
        writeln!(f, "checkpoints      {}", self.checkpoints.len())?;
        for checkpoint in &self.checkpoints {
            writeln!(
                f,
                "  after exit {} at {}.{:09} s: {}, {} bytes",
                checkpoint.exit,
                checkpoint.time_ns / 1_000_000_000,
                checkpoint.time_ns % 1_000_000_000,
                if checkpoint.whole {
                    "whole"
                } else {
                    "pages changed since the last"
                },
                checkpoint.bytes
            )?;
        }
        Ok(())
    }
}
