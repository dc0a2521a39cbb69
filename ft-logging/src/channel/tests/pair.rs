//! A primary and a backup that behave: the log arrives in order and whole,
//! and acknowledgements, progress and heartbeats flow back and forth.

use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::support::{
    PATIENCE, batches, config, next_batch, pair, progress, records, recv, recv_until,
};
use crate::channel::{FromBackup, FromPrimary};

/// Everything a receiver yields until its link's threads have ended.
fn drain<T>(from: &Receiver<T>) -> Vec<T> {
    let deadline = Instant::now() + PATIENCE;
    let mut all = Vec::new();
    loop {
        match from.recv_deadline(deadline) {
            Ok(item) => all.push(item),
            Err(RecvTimeoutError::Disconnected) => return all,
            Err(RecvTimeoutError::Timeout) => panic!("the link's threads did not end"),
        }
    }
}

#[test]
fn batches_arrive_in_order_and_whole() {
    let (primary, backup) = pair(&config());
    let sender = primary.sender();
    let from_primary = backup.from_primary();
    // Enough bytes that batches span many reads of the socket.
    let sent = records(20_000);
    let batches = batches(&sent, 1_500);
    for (i, (bytes, through_exit)) in batches.iter().enumerate() {
        sender.batch(bytes.clone(), *through_exit, progress(i as u64 * 10));
    }
    let mut received = Vec::new();
    for (i, chunk) in sent.chunks(1_500).enumerate() {
        let (records, through_exit, released) = next_batch(&from_primary);
        // Batch boundaries and markers are kept too.
        assert_eq!(records, chunk, "batch {i}");
        assert_eq!(through_exit, chunk.last().unwrap().exit());
        assert_eq!(released, progress(i as u64 * 10));
        received.extend(records);
    }
    assert_eq!(received, sent);
}

#[test]
fn the_backup_acknowledges_through_exit() {
    let (primary, backup) = pair(&config());
    let sender = primary.sender();
    let from_backup = primary.from_backup();
    let sent = records(300);
    let batches = batches(&sent, 50);
    let last = sent.last().unwrap().exit();
    for (bytes, through_exit) in batches {
        sender.batch(bytes, through_exit, progress(0));
    }
    let mut acked = 0;
    recv_until(&from_backup, |message| match message {
        FromBackup::Ack { through_exit } => {
            assert!(
                through_exit >= acked,
                "acks went back: {through_exit} < {acked}"
            );
            assert!(
                through_exit <= last,
                "ack for exit {through_exit}, never sent"
            );
            acked = through_exit;
            (acked == last).then_some(())
        }
        other => panic!("{other:?}"),
    });
    drop(backup);
}

#[test]
fn progress_reaches_the_primary() {
    let (primary, backup) = pair(&config());
    let from_backup = primary.from_backup();
    // Queued at once, these may be merged: only the latest must arrive.
    for exit in 1..=100 {
        backup.progress(exit, exit * 1_000);
    }
    let mut seen = 0;
    recv_until(&from_backup, |message| match message {
        FromBackup::Progress { exit, virtual_ns } => {
            assert!(exit > seen, "progress went back: {exit} after {seen}");
            assert_eq!(virtual_ns, exit * 1_000);
            seen = exit;
            (seen == 100).then_some(())
        }
        // Heartbeats from the primary are acknowledged too.
        FromBackup::Ack { .. } => None,
        other => panic!("{other:?}"),
    });
}

#[test]
fn the_primarys_stalls_reach_the_backups_hook_at_once() {
    let (primary, backup) = pair(&config());
    let sender = primary.sender();
    let from_primary = backup.from_primary();
    let (tell, told) = crossbeam_channel::unbounded();
    backup.on_primary_stall(move |stalled| tell.send(stalled).unwrap());
    // The records queued for the replay, untaken, do not hold the news back.
    let sent = records(10);
    let (bytes, through_exit) = batches(&sent, 10).remove(0);
    sender.batch(bytes, through_exit, progress(1));
    sender.stalled(true);
    assert!(recv(&told));
    sender.stalled(false);
    assert!(!recv(&told));
    sender.stalled(true);
    assert!(recv(&told));
    // A hook set while the primary is stalled hears of it at once.
    let (tell, told) = crossbeam_channel::unbounded();
    backup.on_primary_stall(move |stalled| tell.send(stalled).unwrap());
    assert_eq!(told.try_recv(), Ok(true));
    assert_eq!(next_batch(&from_primary).1, through_exit);
}

#[test]
fn heartbeats_carry_the_markers() {
    let (primary, backup) = pair(&config());
    let sender = primary.sender();
    let from_primary = backup.from_primary();
    let from_backup = primary.from_backup();
    // After a batch, heartbeats repeat its marker.
    let sent = records(10);
    let (bytes, through_exit) = batches(&sent, 10).remove(0);
    sender.batch(bytes, through_exit, progress(33));
    assert_eq!(next_batch(&from_primary).1, through_exit);
    let heartbeat = recv(&from_primary);
    assert_eq!(
        heartbeat,
        FromPrimary::Heartbeat {
            through_exit,
            released: progress(33)
        }
    );
    // A new marker without a batch.
    sender.heartbeat_state(1_000, progress(44));
    recv_until(&from_primary, |message| match message {
        FromPrimary::Heartbeat {
            through_exit: 1_000,
            released,
        } if released == progress(44) => Some(()),
        // Until the marker has gone through the queue, the batch's.
        FromPrimary::Heartbeat {
            through_exit: t, ..
        } if t == through_exit => None,
        other => panic!("{other:?}"),
    });
    // The backup acknowledges what a heartbeat says the log holds.
    let wanted = FromBackup::Ack {
        through_exit: 1_000,
    };
    recv_until(&from_backup, |message| (message == wanted).then_some(()));
}

#[test]
fn goodbye_ends_the_link_without_a_loss() {
    let (primary, backup) = pair(&config());
    let sender = primary.sender();
    let from_backup = primary.from_backup();
    let from_primary = backup.from_primary();
    let sent = records(100);
    for (bytes, through_exit) in batches(&sent, 30) {
        sender.batch(bytes, through_exit, progress(0));
    }
    primary.close();

    // The primary's threads have ended: what it heard ends without a loss.
    let heard = drain(&from_backup);
    assert!(
        heard.iter().all(|m| matches!(m, FromBackup::Ack { .. })),
        "{heard:#?}"
    );
    // The backup got the whole log, then Goodbye, then its threads ended.
    let mut messages = drain(&from_primary);
    assert_eq!(messages.pop(), Some(FromPrimary::Goodbye), "{messages:#?}");
    let mut received = Vec::new();
    for message in messages {
        match message {
            FromPrimary::Batch { records, .. } => received.extend(records),
            FromPrimary::Heartbeat { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(received, sent);
    drop(backup);
}
