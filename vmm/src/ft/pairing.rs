//! What must agree between a primary and its backup before they pair: the
//! header that, with the log, determines the guest's run.

use ft_logging::Header;

/// Compares the primary's header with the one this backup would run,
/// naming the first difference. The digest interval is the primary's to
/// choose: the backup checks digests where the primary sends them.
pub fn compare(primary: &Header, ours: &Header) -> Result<(), String> {
    if primary.platform != ours.platform {
        return Err(format!(
            "the primary runs platform `{}`, this backup `{}`",
            primary.platform, ours.platform
        ));
    }
    if primary.kernel_sha256 != ours.kernel_sha256 {
        return Err(format!(
            "the primary runs kernel `{}` (SHA-256 {}), this backup `{}` (SHA-256 {})",
            primary.kernel_name,
            hex(&primary.kernel_sha256),
            ours.kernel_name,
            hex(&ours.kernel_sha256)
        ));
    }
    if primary.mem_mib != ours.mem_mib {
        return Err(format!(
            "the primary has {} MiB of guest memory, this backup {} MiB",
            primary.mem_mib, ours.mem_mib
        ));
    }
    if primary.cmdline != ours.cmdline {
        return Err(format!(
            "the primary's guest command line is {:?}, this backup's {:?}",
            primary.cmdline, ours.cmdline
        ));
    }
    if primary.disk != ours.disk {
        return Err(format!(
            "the primary's guest has {}, this backup's {}",
            device("disk", primary.disk),
            device("disk", ours.disk)
        ));
    }
    if primary.net != ours.net {
        return Err(format!(
            "the primary's guest has {}, this backup's {}",
            device("network card", primary.net),
            device("network card", ours.net)
        ));
    }
    if let Some((theirs, mine)) = primary
        .cpuid
        .iter()
        .zip(&ours.cpuid)
        .find(|(theirs, mine)| theirs != mine)
    {
        return Err(format!(
            "the CPU models differ at CPUID leaf {:#x}.{}: the primary's {theirs:?}, this backup's {mine:?}",
            theirs.function, theirs.index
        ));
    }
    if primary.cpuid.len() != ours.cpuid.len() {
        return Err(format!(
            "the CPU models differ: the primary has {} CPUID leaves, this backup {}",
            primary.cpuid.len(),
            ours.cpuid.len()
        ));
    }
    Ok(())
}

/// "no disk", or "a disk (2048 sectors)".
fn device(kind: &str, info: Option<impl std::fmt::Display>) -> String {
    match info {
        None => format!("no {kind}"),
        Some(info) => format!("a {kind} ({info})"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use ft_logging::{CpuidLeaf, DiskInfo, NetInfo};

    use super::*;

    fn header() -> Header {
        Header {
            platform: "ftvm-pc-1".into(),
            mem_mib: 64,
            cmdline: "ticks=5".into(),
            kernel_name: "ticker".into(),
            kernel: vec![1, 2, 3],
            kernel_sha256: [7; 32],
            cpuid: vec![CpuidLeaf {
                function: 1,
                ecx: 3,
                ..Default::default()
            }],
            digest_interval: 100,
            disk: None,
            net: None,
        }
    }

    #[test]
    fn each_difference_is_named() {
        assert_eq!(compare(&header(), &header()), Ok(()));
        let mut other = header();
        other.digest_interval = 5;
        assert_eq!(
            compare(&header(), &other),
            Ok(()),
            "the interval is the primary's"
        );
        type Change = fn(&mut Header);
        let cases: [(Change, &str); 7] = [
            (|h| h.kernel_sha256 = [8; 32], "kernel"),
            (|h| h.mem_mib = 128, "MiB"),
            (|h| h.cmdline = "ticks=6".into(), "command line"),
            (|h| h.cpuid[0].ecx = 1, "CPUID leaf 0x1.0"),
            (|h| h.platform = "ftvm-pc-0".into(), "platform"),
            (
                |h| {
                    h.disk = Some(DiskInfo {
                        sectors: 8,
                        read_only: false,
                    })
                },
                "a disk (8 sectors)",
            ),
            (
                |h| {
                    h.net = Some(NetInfo {
                        mac: [0x52, 0x54, 0, 1, 2, 3],
                    })
                },
                "MAC 52:54:00:01:02:03",
            ),
        ];
        for (change, needle) in cases {
            let mut other = header();
            change(&mut other);
            let message = compare(&header(), &other).unwrap_err();
            assert!(message.contains(needle), "{message}");
        }
    }
}
