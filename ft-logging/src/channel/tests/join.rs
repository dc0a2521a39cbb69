//! A live side joining a standby: the VM's parts arrive in order before
//! the log, and the standby acknowledges nothing until it holds the state.

use std::time::Duration;

use super::support::{batches, config, hello, listen, progress, records, recv_until};
use crate::channel::{DiskSample, FromBackup, FromPrimary, PrimaryHello, connect};

fn join_hello() -> PrimaryHello {
    PrimaryHello {
        join: true,
        ..hello()
    }
}

#[test]
fn the_vm_arrives_before_the_log_and_nothing_is_acknowledged_before_holding() {
    let (addr, accepting) = listen(config());
    let primary = connect(addr, &config(), &join_hello()).unwrap();
    let (standby, received) = accepting.join().unwrap().unwrap();
    assert_eq!(received, join_hello(), "the standby knows it is a join");
    let sender = primary.sender();
    let sample = DiskSample {
        sector: 7,
        sha256: [9; 32],
    };
    sender.pages(vec![1; 100_000]);
    sender.pages(vec![2; 10]);
    sender.state(b"the machine".to_vec());
    let sent = records(30);
    let (bytes, last) = batches(&sent, 30).remove(0);
    sender.batch(bytes, last, progress(3));
    sender.disk_check(vec![sample]);

    let from_primary = standby.from_primary();
    let mut parts = Vec::new();
    recv_until(&from_primary, |message| {
        match message {
            FromPrimary::Pages(pages) => parts.push(format!("pages {}", pages.len())),
            FromPrimary::State(state) => parts.push(String::from_utf8(state).unwrap()),
            FromPrimary::Batch { records, .. } => {
                assert_eq!(records, sent);
                parts.push("batch".into());
            }
            FromPrimary::DiskCheck(samples) => {
                assert_eq!(samples, vec![sample]);
                parts.push("disk check".into());
            }
            FromPrimary::Heartbeat { .. } => {}
            other => panic!("{other:?}"),
        }
        (parts.len() == 5).then_some(())
    });
    assert_eq!(
        parts,
        [
            "pages 100000",
            "pages 10",
            "the machine",
            "batch",
            "disk check"
        ]
    );
    // Heartbeats have come and gone: still no acknowledgement.
    let from_backup = primary.from_backup();
    std::thread::sleep(Duration::from_millis(200));
    for message in from_backup.try_iter() {
        assert!(
            !matches!(message, FromBackup::Ack { .. } | FromBackup::Holding { .. }),
            "before holding the state: {message:?}"
        );
    }
    standby.hold(41);
    let holding = recv_until(&from_backup, |message| match message {
        FromBackup::Holding { exit } => Some(exit),
        other => panic!("before Holding: {other:?}"),
    });
    assert_eq!(holding, 41);
    // What arrived before is acknowledged now.
    let acked = recv_until(&from_backup, |message| match message {
        FromBackup::Ack { through_exit } => Some(through_exit),
        _ => None,
    });
    assert_eq!(acked, last);
}
