//! The binary encoding of the header and the records, shared by trace files
//! and the logging channel.
//!
//! A frame is `[varint body length][body][CRC32C of the body, u32 LE]`, and
//! a body is `[tag][fields]`. Integers are unsigned LEB128 varints, except
//! hashes and signatures, which are fixed-width little endian. Each record's
//! exit is a zigzag delta from the previous record's exit, and each time
//! sample a zigzag delta from the previous one, so an [`Encoder`] and its
//! [`Decoder`] must see the same records in the same order. Deltas wrap
//! around, so every pair of u64 values has one.

mod fields;
mod varint;

use crate::{
    CpuidLeaf, DiskInfo, End, EndReason, Event, Header, NetInfo, Record, StateDigest, StopReason,
    Stream, StreamDigest,
};
use fields::{Fields, put_bytes, put_varint, put_zigzag};
use varint::VarintError;

/// The largest header body accepted (the header holds the kernel).
pub const MAX_HEADER_FRAME: u64 = 256 << 20;
/// The largest record body accepted.
pub const MAX_RECORD_FRAME: u64 = 16 << 20;

const TAG_HEADER: u8 = 0x01;
const TAG_WALL_CLOCK: u8 = 0x10;
const TAG_TIME: u8 = 0x11;
const TAG_SERIAL_IN: u8 = 0x12;
const TAG_MSR_READ: u8 = 0x13;
const TAG_DISK_DONE: u8 = 0x14;
const TAG_NET_RX: u8 = 0x15;
const TAG_OUTPUT: u8 = 0x20;
const TAG_STATE: u8 = 0x21;
const TAG_END: u8 = 0x22;
const TAG_CHECKPOINT_PAGES: u8 = 0x23;
const TAG_CHECKPOINT: u8 = 0x24;

const STREAM_CONSOLE: u8 = 0;

const REASON_GUEST_EXIT: u8 = 0;
const REASON_RESET: u8 = 1;
const REASON_HALTED: u8 = 2;
const REASON_IDLE: u8 = 3;
const REASON_TRIPLE_FAULT: u8 = 4;
const REASON_STOPPED: u8 = 5;
const REASON_FAILED: u8 = 6;

const STOP_INTERRUPTED: u8 = 0;
const STOP_TERMINATED: u8 = 1;
const STOP_USER_QUIT: u8 = 2;

/// Why bytes do not decode as a header or a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame's checksum does not match its contents.
    #[error(
        "checksum mismatch: the frame carries 0x{expected:08x}, its contents hash to 0x{found:08x}"
    )]
    Checksum {
        /// The checksum the frame carries.
        expected: u32,
        /// The checksum of its contents.
        found: u32,
    },
    /// A record kind this version does not know.
    #[error("unknown record kind 0x{0:02x}")]
    UnknownTag(u8),
    /// A field that does not decode.
    #[error("malformed {field}: {problem}")]
    Malformed {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A frame longer than the limit for its kind.
    #[error("a frame of {length} bytes exceeds the limit of {limit} bytes")]
    FrameTooLong {
        /// Its length in bytes.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// A number that does not fit its field.
    #[error("numeric overflow in {field}")]
    Overflow {
        /// The field.
        field: &'static str,
    },
}

/// The result of decoding from the start of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A record, and the bytes its frame took.
    Record(Record, usize),
    /// The input holds no complete frame yet: read more and try again.
    Incomplete,
}

/// Encodes records into frames, each relative to the records before it.
#[derive(Debug, Default)]
pub struct Encoder {
    exit: u64,
    time_ns: u64,
    /// The body being built, kept to reuse its allocation.
    body: Vec<u8>,
}

impl Encoder {
    /// An encoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one frame holding `record` to `out`.
    ///
    /// A record's body must fit in [`MAX_RECORD_FRAME`] bytes for a decoder
    /// to accept it; only a SerialIn event of over 16 MiB could exceed it,
    /// and the UART's FIFO takes 64 bytes at a time.
    pub fn encode(&mut self, record: &Record, out: &mut Vec<u8>) {
        self.body.clear();
        let body = &mut self.body;
        let exit_delta = record.exit().wrapping_sub(self.exit) as i64;
        match record {
            Record::Event {
                signature, event, ..
            } => {
                let tag = match event {
                    Event::WallClock { .. } => TAG_WALL_CLOCK,
                    Event::Time { .. } => TAG_TIME,
                    Event::SerialIn(_) => TAG_SERIAL_IN,
                    Event::MsrRead { .. } => TAG_MSR_READ,
                    Event::DiskDone { .. } => TAG_DISK_DONE,
                    Event::NetRx(_) => TAG_NET_RX,
                };
                body.push(tag);
                put_zigzag(body, exit_delta);
                body.extend_from_slice(&signature.to_le_bytes());
                match event {
                    Event::WallClock { unix_ns } => put_varint(body, *unix_ns),
                    Event::Time { ns } => {
                        put_zigzag(body, ns.wrapping_sub(self.time_ns) as i64);
                        self.time_ns = *ns;
                    }
                    Event::SerialIn(bytes) | Event::NetRx(bytes) => put_bytes(body, bytes),
                    Event::MsrRead { index, value } => {
                        put_varint(body, u64::from(*index));
                        put_varint(body, *value);
                    }
                    Event::DiskDone {
                        request,
                        status,
                        data,
                    } => {
                        put_varint(body, *request);
                        body.push(*status);
                        put_bytes(body, data);
                    }
                }
            }
            Record::Output { stream, digest, .. } => {
                body.push(TAG_OUTPUT);
                put_zigzag(body, exit_delta);
                body.push(match stream {
                    Stream::Console => STREAM_CONSOLE,
                });
                put_stream_digest(body, digest);
            }
            Record::State { digest, .. } => {
                body.push(TAG_STATE);
                put_zigzag(body, exit_delta);
                put_state_digest(body, digest);
            }
            Record::End(end) => {
                body.push(TAG_END);
                put_zigzag(body, exit_delta);
                put_end(body, end);
            }
            Record::CheckpointPages { pages, .. } => {
                body.push(TAG_CHECKPOINT_PAGES);
                put_zigzag(body, exit_delta);
                put_bytes(body, pages);
            }
            // The decoder's state in full, so a reader can start here.
            Record::Checkpoint {
                exit,
                whole,
                machine,
            } => {
                body.push(TAG_CHECKPOINT);
                put_varint(body, *exit);
                put_varint(body, self.time_ns);
                body.push(u8::from(*whole));
                put_bytes(body, machine);
            }
        }
        self.exit = record.exit();
        debug_assert!(self.body.len() as u64 <= MAX_RECORD_FRAME);
        put_frame(&self.body, out);
    }
}

/// Decodes frames into records, each relative to the records before it; a
/// new decoder can start at a checkpoint record, which holds the state.
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    exit: u64,
    time_ns: u64,
    /// Whether the next checkpoint record sets the decoder's state rather
    /// than having to agree with it.
    seeking: bool,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder placed at a checkpoint record in the middle of a stream:
    /// it takes that record's exit and time as its own.
    pub fn at_checkpoint() -> Self {
        Self {
            seeking: true,
            ..Self::default()
        }
    }

    /// Decodes the frame at the start of `input`. On an error the decoder is
    /// unchanged, but the stream cannot be resynchronised.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, CodecError> {
        let Some((body, len)) = take_frame(input, MAX_RECORD_FRAME)? else {
            return Ok(Decoded::Incomplete);
        };
        let mut fields = Fields::new(body);
        let tag = fields.u8("record kind")?;
        if !matches!(tag, TAG_WALL_CLOCK..=TAG_NET_RX | TAG_OUTPUT..=TAG_CHECKPOINT) {
            return Err(CodecError::UnknownTag(tag));
        }
        if tag == TAG_CHECKPOINT {
            let exit = fields.varint("checkpoint exit")?;
            let time_ns = fields.varint("checkpoint time")?;
            let record = Record::Checkpoint {
                exit,
                whole: match fields.u8("checkpoint kind")? {
                    0 => false,
                    1 => true,
                    _ => return Err(invalid("checkpoint kind")),
                },
                machine: fields.bytes("machine state")?.to_vec(),
            };
            fields.finish()?;
            // The encoder writes its own time: read in sequence, a
            // checkpoint that says otherwise was not written by it.
            if !self.seeking && time_ns != self.time_ns {
                return Err(invalid("checkpoint time"));
            }
            self.exit = exit;
            self.time_ns = time_ns;
            self.seeking = false;
            return Ok(Decoded::Record(record, len));
        }
        let exit = self.exit.wrapping_add(fields.zigzag("exit")? as u64);
        let mut time_ns = self.time_ns;
        let record = match tag {
            TAG_OUTPUT => Record::Output {
                exit,
                stream: match fields.u8("stream")? {
                    STREAM_CONSOLE => Stream::Console,
                    _ => return Err(invalid("stream")),
                },
                digest: stream_digest(&mut fields)?,
            },
            TAG_STATE => Record::State {
                exit,
                digest: state_digest(&mut fields)?,
            },
            TAG_END => Record::End(end(exit, &mut fields)?),
            TAG_CHECKPOINT_PAGES => Record::CheckpointPages {
                exit,
                pages: fields.bytes("checkpoint pages")?.to_vec(),
            },
            _ => {
                let signature = fields.u32_le("signature")?;
                let event = match tag {
                    TAG_WALL_CLOCK => Event::WallClock {
                        unix_ns: fields.varint("wall clock")?,
                    },
                    TAG_TIME => {
                        time_ns = time_ns.wrapping_add(fields.zigzag("time")? as u64);
                        Event::Time { ns: time_ns }
                    }
                    TAG_SERIAL_IN => Event::SerialIn(fields.bytes("serial input")?.to_vec()),
                    TAG_NET_RX => Event::NetRx(fields.bytes("frame")?.to_vec()),
                    TAG_DISK_DONE => Event::DiskDone {
                        request: fields.varint("disk request")?,
                        status: fields.u8("disk status")?,
                        data: fields.bytes("disk data")?.to_vec(),
                    },
                    _ => Event::MsrRead {
                        index: fields.varint_u32("MSR index")?,
                        value: fields.varint("MSR value")?,
                    },
                };
                Record::Event {
                    exit,
                    signature,
                    event,
                }
            }
        };
        fields.finish()?;
        self.exit = exit;
        self.time_ns = time_ns;
        Ok(Decoded::Record(record, len))
    }
}

/// Appends the header's frame to `out`; refuses a header (in practice, a
/// kernel) too large for a decoder to accept.
pub fn encode_header(header: &Header, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut body = vec![TAG_HEADER];
    put_bytes(&mut body, header.platform.as_bytes());
    put_varint(&mut body, u64::from(header.mem_mib));
    put_bytes(&mut body, header.cmdline.as_bytes());
    put_bytes(&mut body, header.kernel_name.as_bytes());
    put_bytes(&mut body, &header.kernel);
    body.extend_from_slice(&header.kernel_sha256);
    put_varint(&mut body, header.cpuid.len() as u64);
    for leaf in &header.cpuid {
        for word in [
            leaf.function,
            leaf.index,
            leaf.flags,
            leaf.eax,
            leaf.ebx,
            leaf.ecx,
            leaf.edx,
        ] {
            body.extend_from_slice(&word.to_le_bytes());
        }
    }
    put_varint(&mut body, header.digest_interval);
    match header.disk {
        None => body.push(0),
        Some(disk) => {
            body.push(1 + u8::from(disk.read_only));
            put_varint(&mut body, disk.sectors);
        }
    }
    match header.net {
        None => body.push(0),
        Some(net) => {
            body.push(1);
            body.extend_from_slice(&net.mac);
        }
    }
    if body.len() as u64 > MAX_HEADER_FRAME {
        return Err(CodecError::FrameTooLong {
            length: body.len() as u64,
            limit: MAX_HEADER_FRAME,
        });
    }
    put_frame(&body, out);
    Ok(())
}

/// Decodes the header frame at the start of `input`: the header and the
/// bytes its frame took, or `None` while the input holds only part of it.
pub fn decode_header(input: &[u8]) -> Result<Option<(Header, usize)>, CodecError> {
    let Some((body, len)) = take_frame(input, MAX_HEADER_FRAME)? else {
        return Ok(None);
    };
    let mut fields = Fields::new(body);
    if fields.u8("header")? != TAG_HEADER {
        return Err(CodecError::Malformed {
            field: "header",
            problem: "the first frame is not a header",
        });
    }
    let platform = fields.string("platform")?;
    let mem_mib = fields.varint_u32("memory size")?;
    let cmdline = fields.string("command line")?;
    let kernel_name = fields.string("kernel name")?;
    let kernel = fields.bytes("kernel")?.to_vec();
    let kernel_sha256 = fields.array("kernel hash")?;
    let leaves = fields.varint("CPUID leaves")?;
    // Each leaf takes 28 bytes, so the frame's length bounds the loop.
    let mut cpuid = Vec::new();
    for _ in 0..leaves {
        cpuid.push(CpuidLeaf {
            function: fields.u32_le("CPUID leaf")?,
            index: fields.u32_le("CPUID leaf")?,
            flags: fields.u32_le("CPUID leaf")?,
            eax: fields.u32_le("CPUID leaf")?,
            ebx: fields.u32_le("CPUID leaf")?,
            ecx: fields.u32_le("CPUID leaf")?,
            edx: fields.u32_le("CPUID leaf")?,
        });
    }
    let digest_interval = fields.varint("digest interval")?;
    let disk = match fields.u8("disk")? {
        0 => None,
        kind @ (1 | 2) => Some(DiskInfo {
            read_only: kind == 2,
            sectors: fields.varint("disk size")?,
        }),
        _ => return Err(invalid("disk")),
    };
    let net = match fields.u8("network card")? {
        0 => None,
        1 => Some(NetInfo {
            mac: fields.array("MAC address")?,
        }),
        _ => return Err(invalid("network card")),
    };
    fields.finish()?;
    let header = Header {
        platform,
        mem_mib,
        cmdline,
        kernel_name,
        kernel,
        kernel_sha256,
        cpuid,
        digest_interval,
        disk,
        net,
    };
    Ok(Some((header, len)))
}

fn put_frame(body: &[u8], out: &mut Vec<u8>) {
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
}

/// The checked body of the frame at the start of `input` and the frame's
/// length, or `None` while the frame is incomplete.
fn take_frame(input: &[u8], limit: u64) -> Result<Option<(&[u8], usize)>, CodecError> {
    const FIELD: &str = "frame length";
    let (length, prefix) = match varint::get(input) {
        Ok(found) => found,
        Err(VarintError::Incomplete) => return Ok(None),
        Err(VarintError::Overflow) => return Err(CodecError::Overflow { field: FIELD }),
        Err(VarintError::Overlong) => {
            return Err(CodecError::Malformed {
                field: FIELD,
                problem: "overlong varint",
            });
        }
    };
    if length > limit {
        return Err(CodecError::FrameTooLong { length, limit });
    }
    if length == 0 {
        return Err(CodecError::Malformed {
            field: "frame",
            problem: "empty",
        });
    }
    // Below the limit, so it fits in a usize.
    let end = prefix + length as usize;
    let Some(stored) = input.get(end..end + 4) else {
        return Ok(None);
    };
    let body = &input[prefix..end];
    let expected = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let found = crc32c::crc32c(body);
    if expected != found {
        return Err(CodecError::Checksum { expected, found });
    }
    Ok(Some((body, end + 4)))
}

fn invalid(field: &'static str) -> CodecError {
    CodecError::Malformed {
        field,
        problem: "invalid value",
    }
}

fn put_stream_digest(body: &mut Vec<u8>, digest: &StreamDigest) {
    put_varint(body, digest.bytes);
    body.extend_from_slice(&digest.digest.to_le_bytes());
}

fn stream_digest(fields: &mut Fields<'_>) -> Result<StreamDigest, CodecError> {
    Ok(StreamDigest {
        bytes: fields.varint("output length")?,
        digest: fields.u64_le("output digest")?,
    })
}

fn put_state_digest(body: &mut Vec<u8>, digest: &StateDigest) {
    body.extend_from_slice(&digest.registers.to_le_bytes());
    body.extend_from_slice(&digest.memory.to_le_bytes());
}

fn state_digest(fields: &mut Fields<'_>) -> Result<StateDigest, CodecError> {
    Ok(StateDigest {
        registers: fields.u64_le("register digest")?,
        memory: fields.u64_le("memory digest")?,
    })
}

fn put_end(body: &mut Vec<u8>, end: &End) {
    body.extend_from_slice(&end.signature.to_le_bytes());
    match &end.reason {
        EndReason::GuestExit(status) => body.extend_from_slice(&[REASON_GUEST_EXIT, *status]),
        EndReason::Reset => body.push(REASON_RESET),
        EndReason::Halted => body.push(REASON_HALTED),
        EndReason::Idle => body.push(REASON_IDLE),
        EndReason::TripleFault => body.push(REASON_TRIPLE_FAULT),
        EndReason::Stopped(stop) => body.extend_from_slice(&[
            REASON_STOPPED,
            match stop {
                StopReason::Interrupted => STOP_INTERRUPTED,
                StopReason::Terminated => STOP_TERMINATED,
                StopReason::UserQuit => STOP_USER_QUIT,
            },
        ]),
        EndReason::Failed(message) => {
            body.push(REASON_FAILED);
            put_bytes(body, message.as_bytes());
        }
    }
    body.push(end.status);
    put_stream_digest(body, &end.console);
    match &end.state {
        None => body.push(0),
        Some(state) => {
            body.push(1);
            put_state_digest(body, state);
        }
    }
}

fn end(exit: u64, fields: &mut Fields<'_>) -> Result<End, CodecError> {
    let signature = fields.u64_le("end signature")?;
    let reason = match fields.u8("end reason")? {
        REASON_GUEST_EXIT => EndReason::GuestExit(fields.u8("guest exit status")?),
        REASON_RESET => EndReason::Reset,
        REASON_HALTED => EndReason::Halted,
        REASON_IDLE => EndReason::Idle,
        REASON_TRIPLE_FAULT => EndReason::TripleFault,
        REASON_STOPPED => EndReason::Stopped(match fields.u8("stop reason")? {
            STOP_INTERRUPTED => StopReason::Interrupted,
            STOP_TERMINATED => StopReason::Terminated,
            STOP_USER_QUIT => StopReason::UserQuit,
            _ => return Err(invalid("stop reason")),
        }),
        REASON_FAILED => EndReason::Failed(fields.string("failure message")?),
        _ => return Err(invalid("end reason")),
    };
    let status = fields.u8("exit status")?;
    let console = stream_digest(fields)?;
    let state = match fields.u8("end state")? {
        0 => None,
        1 => Some(state_digest(fields)?),
        _ => return Err(invalid("end state")),
    };
    Ok(End {
        exit,
        signature,
        reason,
        status,
        console,
        state,
    })
}

#[cfg(test)]
mod tests;
