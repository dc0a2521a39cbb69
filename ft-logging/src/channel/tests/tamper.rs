//! A proxy that alters, cuts, drops, reorders or repeats frames after the
//! handshake: the receiver reports the peer lost and delivers nothing of
//! the frame, and nothing after it.

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::proxy::{Filter, Proxy, Unit, Verdict, forward, proxied_pair};
use super::support::{
    PATIENCE, batches, capture_logs, config, hello, listen, one_warning, primary_loses, progress,
    records, recv_until,
};
use crate::Record;
use crate::channel::{ChannelError, FromBackup, FromPrimary, Lost, PrimaryLink, connect};

const BATCH: u8 = 0x02;
const ACK: u8 = 0x83;
/// Where a frame's payload starts: after length, kind and sequence.
const PAYLOAD_AT: usize = 4 + 1 + 8;

/// Applies `act` to the `n`th batch frame (from 0); forwards the rest.
fn on_batch(n: usize, mut act: impl FnMut(&mut Vec<u8>) -> Verdict + Send + 'static) -> Filter {
    let mut seen = 0;
    Box::new(move |unit, bytes| {
        if !matches!(unit, Unit::Frame(_)) || bytes[4] != BATCH {
            return Verdict::Forward;
        }
        seen += 1;
        if seen - 1 == n {
            act(bytes)
        } else {
            Verdict::Forward
        }
    })
}

/// Three batches of ten records each.
fn send_three(primary: &PrimaryLink) -> Vec<Vec<Record>> {
    let sent = records(30);
    for (bytes, through_exit) in batches(&sent, 10) {
        primary.sender().batch(bytes, through_exit, progress(0));
    }
    sent.chunks(10).map(<[Record]>::to_vec).collect()
}

/// The batches delivered before the loss, and the loss; checks that nothing
/// follows it.
fn delivered_then_lost(from: &Receiver<FromPrimary>) -> (Vec<Vec<Record>>, Lost) {
    let mut delivered = Vec::new();
    let lost = recv_until(from, |message| match message {
        FromPrimary::Batch { records, .. } => {
            delivered.push(records);
            None
        }
        FromPrimary::Heartbeat { .. } => None,
        FromPrimary::Lost(lost) => Some(lost),
        FromPrimary::Goodbye => panic!("a goodbye nobody said"),
        other => panic!("a transfer nobody made: {other:?}"),
    });
    match from.recv_timeout(PATIENCE) {
        Err(RecvTimeoutError::Disconnected) => {}
        other => panic!("after the loss: {other:?}"),
    }
    (delivered, lost)
}

/// The primary hears of it too, as the backup drops the connection.
fn both_lost(to_backup: Filter) -> (Vec<Vec<Record>>, Vec<Vec<Record>>, Lost) {
    let (primary, backup, _proxy) = proxied_pair(&config(), to_backup, forward());
    let sent = send_three(&primary);
    let (delivered, lost) = delivered_then_lost(&backup.from_primary());
    primary_loses(&primary);
    (sent, delivered, lost)
}

#[test]
fn a_flipped_bit_is_a_loss_and_its_records_never_arrive() {
    // A bit of the second batch's records, after the marker.
    let (sent, delivered, lost) = both_lost(on_batch(1, |bytes| {
        bytes[PAYLOAD_AT + 16 + 3] ^= 0x10;
        Verdict::Forward
    }));
    assert_eq!(delivered, sent[..1]);
    assert!(
        lost.reason.contains("(batch) has a bad MAC"),
        "{}",
        lost.reason
    );
}

#[test]
fn a_flipped_bit_in_an_ack_is_a_loss_at_the_primary() {
    // The first ack, whatever it acknowledges: its MAC's last bit.
    let mut done = false;
    let to_primary: Filter = Box::new(move |unit, bytes| {
        if !done && matches!(unit, Unit::Frame(_)) && bytes[4] == ACK {
            done = true;
            *bytes.last_mut().unwrap() ^= 1;
        }
        Verdict::Forward
    });
    let (primary, _backup, _proxy) = proxied_pair(&config(), forward(), to_primary);
    send_three(&primary);
    // No acknowledgement got through before the loss.
    match primary.from_backup().recv_timeout(PATIENCE).unwrap() {
        FromBackup::Lost(lost) => assert!(
            lost.reason.contains("(ack) has a bad MAC"),
            "{}",
            lost.reason
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_connection_cut_inside_a_frame_delivers_nothing_of_it() {
    let (sent, delivered, lost) = both_lost(on_batch(1, |_| Verdict::HalfThenCut));
    assert_eq!(delivered, sent[..1]);
    assert!(
        lost.reason.contains("in the middle of a frame"),
        "{}",
        lost.reason
    );
}

#[test]
fn a_dropped_frame_is_a_loss() {
    let (sent, delivered, lost) = both_lost(on_batch(1, |_| Verdict::Drop));
    assert_eq!(delivered, sent[..1]);
    assert!(
        lost.reason.contains("missing (dropped in transit)"),
        "{}",
        lost.reason
    );
}

#[test]
fn a_reordered_frame_is_a_loss() {
    // The second batch is held back and sent after the frame that follows it.
    let mut held: Option<Vec<u8>> = None;
    let mut batches = 0;
    let swap: Filter = Box::new(move |unit, bytes| {
        if !matches!(unit, Unit::Frame(_)) {
            return Verdict::Forward;
        }
        if let Some(late) = held.take() {
            bytes.extend(late);
            return Verdict::Forward;
        }
        if bytes[4] == BATCH {
            batches += 1;
            if batches == 2 {
                held = Some(std::mem::take(bytes));
                return Verdict::Drop;
            }
        }
        Verdict::Forward
    });
    let (sent, delivered, lost) = both_lost(swap);
    assert_eq!(delivered, sent[..1]);
    assert!(lost.reason.contains("missing"), "{}", lost.reason);
}

#[test]
fn a_repeated_frame_is_a_loss() {
    let (sent, delivered, lost) = both_lost(on_batch(0, |_| Verdict::Twice));
    // The first copy counts, once.
    assert_eq!(delivered, sent[..1]);
    assert!(
        lost.reason.contains("replayed or reordered"),
        "{}",
        lost.reason
    );
}

#[test]
fn a_tampered_header_is_refused_and_the_backup_waits_on() {
    capture_logs();
    let (addr, accepting) = listen(config());
    let tamper: Filter = Box::new(|unit, bytes| {
        if unit == Unit::Frame(0) {
            bytes[PAYLOAD_AT] ^= 1;
        }
        Verdict::Forward
    });
    let proxy = Proxy::start(addr, tamper, forward());
    match connect(proxy.addr, &config(), &hello()) {
        Err(ChannelError::Handshake { .. }) => {}
        other => panic!("{other:?}"),
    }
    one_warning(&[&format!("addr={addr}}}"), "(header) has a bad MAC"]);
    let primary = connect(addr, &config(), &hello()).unwrap();
    let (backup, _) = accepting.join().unwrap().unwrap();
    drop((primary, backup));
}

#[test]
fn an_authentic_batch_that_ends_inside_a_record_delivers_none_of_it() {
    // Not the proxy's doing: a primary that queues a record cut short.
    let (primary, backup) = super::support::pair(&config());
    let sent = records(20);
    let mut whole = batches(&sent, 10).into_iter();
    let (first, through_exit) = whole.next().unwrap();
    primary.sender().batch(first, through_exit, progress(0));
    let (mut cut, through_exit) = whole.next().unwrap();
    cut.pop();
    primary.sender().batch(cut, through_exit, progress(0));
    let (delivered, lost) = delivered_then_lost(&backup.from_primary());
    assert_eq!(delivered, [sent[..10].to_vec()]);
    assert!(
        lost.reason.contains("ends inside a record"),
        "{}",
        lost.reason
    );
}
