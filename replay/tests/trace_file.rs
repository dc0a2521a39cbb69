//! Trace files: what the writer writes the reader reads back, and every
//! damaged file is refused with a message naming the problem and where.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use ft_logging::{
    CodecError, CpuidLeaf, End, EndReason, Event, FORMAT_VERSION, Header, Record, StateDigest,
    StopReason, Stream, StreamDigest,
};
use replay::{MAGIC, Position, RecordKind, TraceError, TraceReader, TraceSummary, TraceWriter};
use sha2::{Digest, Sha256};

fn header() -> Header {
    let kernel = b"\x7fELF a tiny kernel".to_vec();
    Header {
        platform: "ftvm-pc/test".into(),
        mem_mib: 64,
        cmdline: "ticks=3".into(),
        kernel_name: "tiny".into(),
        kernel_sha256: Sha256::digest(&kernel).into(),
        kernel,
        cpuid: vec![
            CpuidLeaf {
                function: 0,
                eax: 0xd,
                ..CpuidLeaf::default()
            },
            CpuidLeaf {
                function: 1,
                ecx: 0x8000_0000,
                ..CpuidLeaf::default()
            },
        ],
        digest_interval: 10,
        disk: None,
        net: None,
    }
}

fn event(exit: u64, event: Event) -> Record {
    Record::Event {
        exit,
        signature: (exit as u32).wrapping_mul(0x9e37_79b9),
        event,
    }
}

/// A short run with every kind of record.
fn records() -> Vec<Record> {
    vec![
        event(
            0,
            Event::WallClock {
                unix_ns: 1_700_000_000_123_456_789,
            },
        ),
        event(0, Event::Time { ns: 0 }),
        event(4, Event::Time { ns: 1_500_000 }),
        event(4, Event::SerialIn(b"ok\r".to_vec())),
        event(
            7,
            Event::MsrRead {
                index: 0x10,
                value: 2_000_000,
            },
        ),
        event(8, Event::NetRx(b"a frame".to_vec())),
        event(
            8,
            Event::DiskDone {
                request: 3,
                status: 0,
                data: vec![0x5a; 512],
            },
        ),
        Record::Output {
            exit: 10,
            stream: Stream::Console,
            digest: StreamDigest {
                bytes: 12,
                digest: 0xfeed,
            },
        },
        Record::State {
            exit: 10,
            digest: StateDigest {
                registers: 1,
                memory: 2,
            },
        },
        Record::CheckpointPages {
            exit: 10,
            pages: b"some pages".to_vec(),
        },
        Record::Checkpoint {
            exit: 10,
            whole: true,
            machine: b"a machine".to_vec(),
        },
        event(12, Event::Time { ns: 52_000_000 }),
        Record::End(End {
            exit: 15,
            signature: 0xabcd_ef01_2345_6789,
            reason: EndReason::Stopped(StopReason::Terminated),
            status: 143,
            console: StreamDigest {
                bytes: 20,
                digest: 0xbeef,
            },
            state: None,
        }),
    ]
}

fn write_trace(path: &Path, header: &Header, records: &[Record]) {
    let mut writer = TraceWriter::create(path, header).unwrap();
    for record in records {
        writer.write(record).unwrap();
    }
    writer.finish().unwrap();
}

/// The bytes of a trace of [`records`].
fn trace_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.trace");
    write_trace(&path, &header(), &records());
    std::fs::read(path).unwrap()
}

/// Reads a whole trace from memory.
fn read_all(bytes: &[u8]) -> Result<(Header, Vec<Record>), TraceError> {
    let mut reader = TraceReader::new(Cursor::new(bytes))?;
    let mut records = Vec::new();
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok((reader.header().clone(), records))
}

fn refusal(bytes: &[u8]) -> TraceError {
    match read_all(bytes) {
        Ok(_) => panic!("a damaged trace was accepted"),
        Err(error) => error,
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn the_reader_reads_back_what_the_writer_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trace");
    write_trace(&path, &header(), &records());
    let len = std::fs::metadata(&path).unwrap().len();

    let mut reader = TraceReader::open(&path).unwrap();
    assert_eq!(reader.header(), &header());
    let header_end = reader.position();
    assert_eq!(header_end.record, 0);
    assert!(header_end.offset > MAGIC.len() as u64 + 4);
    let mut read = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        read.push(record);
    }
    assert_eq!(read, records());
    assert_eq!(
        reader.position(),
        Position {
            record: records().len() as u64,
            offset: len
        }
    );
    assert_eq!(
        reader.next_record().unwrap(),
        None,
        "None again after the end"
    );
}

#[test]
fn the_file_starts_with_the_magic_and_the_version() {
    let bytes = trace_bytes();
    assert_eq!(bytes[..8], *b"FTVMTRC\0");
    assert_eq!(bytes[8..12], FORMAT_VERSION.to_le_bytes());
}

#[test]
fn every_single_byte_change_is_refused() {
    let good = trace_bytes();
    assert!(read_all(&good).is_ok());
    let mut bad = good.clone();
    for at in 0..good.len() {
        let masks = (0..8).map(|bit| 1u8 << bit).chain([0xff]);
        for mask in masks {
            bad[at] = good[at] ^ mask;
            if let Ok((header, records)) = read_all(&bad) {
                panic!("byte {at} ^ {mask:#04x} was accepted: {header:?} {records:?}");
            }
        }
        bad[at] = good[at];
    }
}

#[test]
fn every_truncation_is_refused() {
    let good = trace_bytes();
    assert!(matches!(refusal(&[]), TraceError::Empty));
    for len in 1..good.len() {
        match refusal(&good[..len]) {
            TraceError::Truncated { offset, .. } => assert_eq!(offset, len as u64),
            other => panic!("cut at {len}: {other}"),
        }
    }
    let message = refusal(&good[..good.len() - 1]).to_string();
    let last = records().len();
    assert!(
        message.starts_with(&format!(
            "truncated at byte {} in record {last}",
            good.len() - 1
        )),
        "{message}"
    );
    assert!(message.contains("no end record"), "{message}");
}

#[test]
fn random_bytes_are_refused() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut preamble = MAGIC.to_vec();
    preamble.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    for round in 0..2_000 {
        let len = (rng.next() % 300) as usize + 1;
        let noise = rng.bytes(len);
        assert!(
            matches!(refusal(&noise), TraceError::BadMagic),
            "round {round}"
        );
        let mut after_preamble = preamble.clone();
        after_preamble.extend_from_slice(&noise);
        refusal(&after_preamble);
    }
    assert_eq!(
        refusal(b"#!/bin/sh\n").to_string(),
        "not an ftvm trace: it does not start with FTVMTRC"
    );
}

#[test]
fn an_empty_or_missing_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.trace");
    std::fs::write(&empty, b"").unwrap();
    let error = TraceReader::open(&empty).unwrap_err();
    assert_eq!(error.to_string(), "the trace is empty");

    let missing: PathBuf = dir.path().join("missing.trace");
    let error = TraceReader::open(&missing).unwrap_err();
    assert!(matches!(error, TraceError::Open { .. }));
    assert!(error.to_string().contains("missing.trace"), "{error}");
}

#[test]
fn another_version_is_refused_naming_both_versions() {
    let mut bytes = trace_bytes();
    for version in [0, FORMAT_VERSION - 1, FORMAT_VERSION + 1] {
        bytes[8..12].copy_from_slice(&version.to_le_bytes());
        assert_eq!(
            refusal(&bytes).to_string(),
            format!(
                "trace format version {version} is not supported; this ftvm reads version {FORMAT_VERSION}"
            )
        );
    }
}

#[test]
fn a_kernel_that_does_not_match_its_hash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel.trace");
    let mut changed = header();
    changed.kernel[0] ^= 1;
    write_trace(&path, &changed, &records());
    let error = TraceReader::open(&path).unwrap_err();
    assert!(
        matches!(error, TraceError::KernelMismatch { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("the header's kernel does not match its SHA-256"),
        "{message}"
    );
    assert!(message.contains(&format!("{:02x}", header().kernel_sha256[0])));
}

#[test]
fn data_after_the_end_record_is_refused() {
    let mut bytes = trace_bytes();
    let end = bytes.len();
    bytes.push(0);
    match refusal(&bytes) {
        TraceError::TrailingData { offset } => assert_eq!(offset, end as u64),
        other => panic!("{other}"),
    }
    // A whole second end record after the first is refused too.
    let mut twice = trace_bytes();
    let good = trace_bytes();
    let mut reader = TraceReader::new(Cursor::new(&good)).unwrap();
    let mut last_start = 0;
    while reader
        .next_record()
        .unwrap()
        .is_some_and(|r| !matches!(r, Record::End(_)))
    {
        last_start = reader.position().offset;
    }
    twice.extend_from_slice(&good[last_start as usize..]);
    assert!(matches!(refusal(&twice), TraceError::TrailingData { .. }));
}

#[test]
fn a_trace_without_an_end_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-end.trace");
    let all = records();
    write_trace(&path, &header(), &all[..all.len() - 1]);
    let error = refusal(&std::fs::read(&path).unwrap());
    assert!(matches!(error, TraceError::Truncated { record, .. } if record == all.len() as u64));
}

#[test]
fn a_corrupt_record_is_named_with_its_number_and_offset() {
    let good = trace_bytes();
    let mut reader = TraceReader::new(Cursor::new(&good)).unwrap();
    reader.next_record().unwrap();
    reader.next_record().unwrap();
    let third = reader.position().offset;
    reader.next_record().unwrap();
    // The last byte of the third record's frame is its checksum's.
    let mut bad = good.clone();
    bad[reader.position().offset as usize - 1] ^= 0x40;
    let error = refusal(&bad);
    assert!(
        matches!(
            error,
            TraceError::Corrupt { record: 3, offset, source: CodecError::Checksum { .. } }
                if offset == third
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("record 3 at byte {third}: checksum mismatch")),
        "{error}"
    );
    // In the header, the message says so.
    let mut bad = good.clone();
    bad[20] ^= 0x01;
    assert!(
        refusal(&bad)
            .to_string()
            .starts_with("the header at byte 12: ")
    );
}

#[test]
fn an_oversized_header_is_refused_before_the_file_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.trace");
    let mut huge = header();
    huge.kernel = vec![0; ft_logging::MAX_HEADER_FRAME as usize];
    let error = TraceWriter::create(&path, &huge).unwrap_err();
    assert!(matches!(
        error,
        TraceError::EncodeHeader(CodecError::FrameTooLong { .. })
    ));
    assert!(!path.exists());
}

#[test]
fn inspect_counts_records_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trace");
    write_trace(&path, &header(), &records());
    let summary = replay::inspect(&path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(summary.bytes, len);
    assert_eq!(summary.records, records().len() as u64);
    let counted =
        |kind: RecordKind| summary.kinds[RecordKind::ALL.iter().position(|k| *k == kind).unwrap()];
    assert_eq!(counted(RecordKind::Time).records, 3);
    assert_eq!(counted(RecordKind::SerialIn).records, 1);
    assert_eq!(counted(RecordKind::End).records, 1);
    let record_bytes: u64 = summary.kinds.iter().map(|count| count.bytes).sum();
    assert_eq!(summary.header_bytes + record_bytes, len);
    assert_eq!(summary.duration_ns, Some(52_000_000));
    assert_eq!(summary.end.exit, 15);
    assert_eq!(summary.cpuid_leaves, 2);

    let text = summary.to_string();
    for needle in [
        "ftvm-pc/test",
        "tiny (18 bytes, SHA-256 ",
        "64 MiB",
        "ticks=3",
        "every 10 exits",
        "exits            15",
        "0.052000000 s",
        "stopped: terminated (SIGTERM), exit status 143",
        "time",
        "serial input",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let from_reader = TraceSummary::read(TraceReader::open(&path).unwrap()).unwrap();
    assert_eq!(from_reader, summary);
}

/// The fuzz targets start from a valid trace and a valid record stream of
/// [`records`], which libFuzzer could hardly find behind the checksums.
#[test]
fn the_fuzz_seeds_are_current() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut stream = Vec::new();
    let mut encoder = ft_logging::Encoder::new();
    for record in records() {
        encoder.encode(&record, &mut stream);
    }
    let expected = [
        (seeds.join("trace_reader/every-kind.trace"), trace_bytes()),
        (seeds.join("record_decoder/every-kind.bin"), stream),
    ];
    for (path, bytes) in expected {
        if std::env::var_os("FTVM_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let found = std::fs::read(&path).unwrap_or_default();
        assert!(
            found == bytes,
            "{} is stale: rewrite it with FTVM_WRITE_FUZZ_SEEDS=1 cargo test -p replay --test trace_file",
            path.display()
        );
    }
}
