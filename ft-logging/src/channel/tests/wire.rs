//! Frames on a real socket, below the link: layout, round trips, and the
//! checks a reader makes before it trusts a length or a kind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::support::{key, other_key, progress, raw_frame, socket_pair};
use crate::channel::frame::{FrameError, FrameReader, FrameWriter, MAC_LEN};
use crate::channel::link::LinkState;
use crate::channel::message::{Message, ToBackup, ToPrimary};
use crate::channel::{DiskSample, HANDSHAKE_TIMEOUT};

const HEADER: u8 = 0x01;
const BATCH: u8 = 0x02;
const PRIMARY_HEARTBEAT: u8 = 0x03;
const ACCEPT: u8 = 0x81;
/// The length counts kind, sequence and MAC besides the payload.
const OVERHEAD: usize = 1 + 8 + MAC_LEN;

fn writer(stream: TcpStream) -> FrameWriter {
    FrameWriter::new(stream, key().mac())
}

/// A reader that gives up rather than hang a test that goes wrong.
fn reader<M: Message>(stream: TcpStream) -> FrameReader<M> {
    let link = LinkState::new("peer", stream.try_clone().unwrap());
    let mut reader = FrameReader::new(stream, key().mac(), link);
    reader.set_timeout(HANDSHAKE_TIMEOUT).unwrap();
    reader
}

fn to_backup_messages() -> Vec<ToBackup> {
    vec![
        ToBackup::Header {
            generation: 9,
            header: b"a header frame".to_vec(),
            join: false,
        },
        ToBackup::Header {
            generation: 10,
            header: b"a header frame for a standby".to_vec(),
            join: true,
        },
        ToBackup::Pages(vec![1, 2, 3]),
        ToBackup::State(b"a machine".to_vec()),
        ToBackup::DiskCheck(vec![
            DiskSample {
                sector: 0,
                sha256: [1; 32],
            },
            DiskSample {
                sector: u64::MAX,
                sha256: [2; 32],
            },
        ]),
        ToBackup::Batch {
            through_exit: 1 << 40,
            released: progress(77),
            sent_ns: 1 << 50,
            records: (0..=255).collect(),
        },
        // An empty batch still carries its marker.
        ToBackup::Batch {
            through_exit: 3,
            released: progress(4),
            sent_ns: 8,
            records: Vec::new(),
        },
        ToBackup::Heartbeat {
            through_exit: u64::MAX,
            released: progress(5),
            sent_ns: 9,
        },
        ToBackup::Stall { stalled: true },
        ToBackup::Stall { stalled: false },
        ToBackup::Goodbye,
    ]
}

#[test]
fn primary_messages_round_trip() {
    let (near, far) = socket_pair();
    let mut frames = writer(near);
    let mut input = reader::<ToBackup>(far);
    let sent = to_backup_messages();
    for message in &sent {
        frames.send(message).unwrap();
    }
    frames.flush().unwrap();
    for message in &sent {
        assert_eq!(&input.read().unwrap(), message);
    }
    assert_eq!(frames.sent(), sent.len() as u64);
}

#[test]
fn backup_messages_round_trip() {
    let (near, far) = socket_pair();
    let mut frames = writer(near);
    let mut input = reader::<ToPrimary>(far);
    let sent = [
        ToPrimary::Accept,
        ToPrimary::Refuse {
            reason: "a reason, with ünïcode".into(),
        },
        ToPrimary::Ack {
            through_exit: 12,
            echo_ns: 1 << 45,
        },
        ToPrimary::Progress {
            exit: 13,
            virtual_ns: 14_000,
        },
        ToPrimary::Heartbeat,
        ToPrimary::Holding { exit: 1 << 33 },
    ];
    for message in &sent {
        frames.send(message).unwrap();
    }
    frames.flush().unwrap();
    for message in &sent {
        assert_eq!(&input.read().unwrap(), message);
    }
}

#[test]
fn frames_have_the_documented_layout() {
    let (near, mut far) = socket_pair();
    let mut frames = writer(near);
    let batch = ToBackup::Batch {
        through_exit: 5,
        released: progress(6),
        sent_ns: 7,
        records: b"records".to_vec(),
    };
    frames.send(&ToBackup::Goodbye).unwrap();
    frames.send(&batch).unwrap();
    frames.close().unwrap();
    let mut bytes = Vec::new();
    far.read_to_end(&mut bytes).unwrap();

    let mut payload = 5u64.to_le_bytes().to_vec();
    payload.extend_from_slice(&6u64.to_le_bytes());
    payload.extend_from_slice(&19u64.to_le_bytes()); // frames released
    payload.extend_from_slice(&7u64.to_le_bytes());
    payload.extend_from_slice(b"records");
    let mut expected = raw_frame(&key().mac(), 0x04, 0, &[]);
    expected.extend(raw_frame(&key().mac(), BATCH, 1, &payload));
    assert_eq!(bytes, expected);
}

#[test]
fn a_clean_end_between_frames_is_closed_and_inside_one_truncated() {
    let (near, far) = socket_pair();
    let mut input = reader::<ToBackup>(far);
    let frame = raw_frame(&key().mac(), PRIMARY_HEARTBEAT, 0, &[0; 32]);
    (&near).write_all(&frame).unwrap();
    (&near).write_all(&frame[..frame.len() - 1]).unwrap();
    near.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(input.read(), Ok(ToBackup::Heartbeat { .. })));
    assert!(matches!(input.read(), Err(FrameError::Truncated)));

    let (near, far) = socket_pair();
    let mut input = reader::<ToBackup>(far);
    drop(near);
    assert!(matches!(input.read(), Err(FrameError::Closed)));
}

/// Sends `bytes` and returns what the reader makes of them, and how long
/// it took: a refusal must not wait for bytes the length promised.
fn read_raw<M: Message + std::fmt::Debug>(bytes: &[u8]) -> (Result<M, FrameError>, Duration) {
    let (near, far) = socket_pair();
    let mut input = reader::<M>(far);
    (&near).write_all(bytes).unwrap();
    let start = Instant::now();
    let result = input.read();
    // `near` stays open until here, so a waiting reader would time out.
    drop(near);
    (result, start.elapsed())
}

fn prefix(length: u32, kind: u8, sequence: u64) -> Vec<u8> {
    let mut bytes = length.to_le_bytes().to_vec();
    bytes.push(kind);
    bytes.extend_from_slice(&sequence.to_le_bytes());
    bytes
}

#[test]
fn an_oversized_length_is_refused_at_once() {
    for (kind, length, limit) in [
        (BATCH, u32::MAX, 32 + crate::channel::MAX_BATCH),
        (PRIMARY_HEARTBEAT, (OVERHEAD + 33) as u32, 32),
    ] {
        let (result, took) = read_raw::<ToBackup>(&prefix(length, kind, 0));
        match result {
            Err(FrameError::TooLong {
                length: found,
                limit: max,
                ..
            }) => {
                assert_eq!(found, length as usize - OVERHEAD);
                assert_eq!(max, limit);
            }
            other => panic!("kind 0x{kind:02x}: {other:?}"),
        }
        assert!(
            took < HANDSHAKE_TIMEOUT / 2,
            "waited {took:?} for a payload"
        );
    }
}

#[test]
fn a_length_shorter_than_the_fixed_part_is_refused() {
    let (result, _) = read_raw::<ToBackup>(&prefix(OVERHEAD as u32 - 1, HEADER, 0));
    assert!(
        matches!(result, Err(FrameError::TooShort { length }) if length == OVERHEAD - 1),
        "{result:?}"
    );
}

#[test]
fn an_unknown_kind_is_refused() {
    // 0x7f is no kind at all; Accept travels only towards the primary.
    for kind in [0x7f, ACCEPT] {
        let (result, took) = read_raw::<ToBackup>(&prefix(OVERHEAD as u32, kind, 0));
        assert!(
            matches!(result, Err(FrameError::UnknownKind { kind: found, frame: 0 }) if found == kind),
            "{result:?}"
        );
        assert!(took < HANDSHAKE_TIMEOUT / 2);
    }
    let (result, _) = read_raw::<ToPrimary>(&prefix(OVERHEAD as u32, BATCH, 0));
    assert!(
        matches!(result, Err(FrameError::UnknownKind { kind: BATCH, .. })),
        "{result:?}"
    );
}

#[test]
fn a_frame_under_another_key_has_a_bad_mac() {
    let frame = raw_frame(&other_key().mac(), PRIMARY_HEARTBEAT, 0, &[0; 16]);
    let (result, _) = read_raw::<ToBackup>(&frame);
    let error = result.unwrap_err();
    assert!(matches!(
        error,
        FrameError::BadMac {
            frame: 0,
            kind: "heartbeat"
        }
    ));
    assert!(error.to_string().contains("altered in transit"), "{error}");
}

#[test]
fn an_authentic_frame_with_a_malformed_payload_is_refused() {
    // A heartbeat must hold exactly two integers.
    let frame = raw_frame(&key().mac(), PRIMARY_HEARTBEAT, 0, &[0; 15]);
    let (result, _) = read_raw::<ToBackup>(&frame);
    assert!(
        matches!(
            result,
            Err(FrameError::Malformed {
                kind: "heartbeat",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn a_stall_flag_other_than_0_or_1_is_refused() {
    let frame = raw_frame(&key().mac(), 0x09, 0, &2u64.to_le_bytes());
    let (result, _) = read_raw::<ToBackup>(&frame);
    assert!(
        matches!(result, Err(FrameError::Malformed { kind: "stall", .. })),
        "{result:?}"
    );
}

#[test]
fn a_long_refusal_reason_is_cut_on_a_character_boundary() {
    let (near, far) = socket_pair();
    let mut frames = writer(near);
    let mut input = reader::<ToPrimary>(far);
    let reason = "é".repeat(1000);
    frames
        .send(&ToPrimary::Refuse {
            reason: reason.clone(),
        })
        .unwrap();
    frames.flush().unwrap();
    let Ok(ToPrimary::Refuse { reason: received }) = input.read() else {
        panic!("no refusal");
    };
    assert_eq!(received.len(), 1024);
    assert!(reason.starts_with(&received));
}
