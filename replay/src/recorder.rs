//! The recording event source: a live source whose inputs are also written
//! to a trace.

use ft_logging::{
    End, Event, EventSource, ExitDone, ExitQuery, Record, SourceError, StateDigest, Stream,
    StreamDigest,
};

use crate::{TraceError, TraceWriter};

/// Wraps the live source `S`: it supplies the events, and the recorder
/// writes each exit's events with the exit signature, the digests, and the
/// end record to a trace.
#[derive(Debug)]
pub struct Recorder<S> {
    inner: S,
    /// `None` once the end record is written.
    writer: Option<TraceWriter>,
    digest_interval: u64,
    /// The console's digest after the last exit.
    console: StreamDigest,
}

impl<S: EventSource> Recorder<S> {
    /// Records to `writer`, whose header says state digests come every
    /// `digest_interval` exits.
    pub fn new(inner: S, writer: TraceWriter, digest_interval: u64) -> Self {
        Self {
            inner,
            writer: Some(writer),
            digest_interval,
            console: StreamDigest::default(),
        }
    }

    /// The live source it wraps.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The live source back; a trace not yet ended is left without its end
    /// record.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Writes a checkpoint of the VM after exit `exit` (see
    /// [`Record::Checkpoint`]): its pages, in pieces that each fit a
    /// record, then its machine state.
    pub fn checkpoint(
        &mut self,
        exit: u64,
        whole: bool,
        pages: Vec<Vec<u8>>,
        machine: Vec<u8>,
    ) -> Result<(), SourceError> {
        for pages in pages {
            self.write(&Record::CheckpointPages { exit, pages })?;
        }
        self.write(&Record::Checkpoint {
            exit,
            whole,
            machine,
        })
    }

    fn write(&mut self, record: &Record) -> Result<(), SourceError> {
        let writer = self.writer.as_mut().ok_or_else(already_ended)?;
        writer.write(record).map_err(write_error)
    }
}

impl<S: EventSource> EventSource for Recorder<S> {
    fn events(&mut self, query: &ExitQuery, events: &mut Vec<Event>) -> Result<(), SourceError> {
        self.inner.events(query, events)
    }

    fn exit_done(&mut self, done: &ExitDone<'_>) -> Result<(), SourceError> {
        // Records carry the low half: enough to find a divergence.
        let signature = done.signature.value() as u32;
        for event in done.events {
            self.write(&Record::Event {
                exit: done.exit,
                signature,
                event: event.clone(),
            })?;
        }
        self.console = done.console;
        self.inner.exit_done(done)
    }

    fn state(&mut self, exit: u64, digest: StateDigest) -> Result<(), SourceError> {
        // A replay checks digests at the header's interval only.
        if self.digest_interval == 0 || !exit.is_multiple_of(self.digest_interval) {
            return Err(SourceError::Log(format!(
                "a state digest at exit {exit} is off the trace's digest interval of {} exits",
                self.digest_interval
            )));
        }
        self.write(&Record::Output {
            exit,
            stream: Stream::Console,
            digest: self.console,
        })?;
        self.write(&Record::State { exit, digest })?;
        self.inner.state(exit, digest)
    }

    fn end(&mut self, end: &End) -> Result<(), SourceError> {
        self.write(&Record::End(end.clone()))?;
        let writer = self.writer.take().ok_or_else(already_ended)?;
        writer.finish().map_err(write_error)?;
        self.inner.end(end)
    }
}

fn already_ended() -> SourceError {
    SourceError::Log("the trace already has its end record".into())
}

fn write_error(error: TraceError) -> SourceError {
    SourceError::LogWrite(error.to_string())
}
