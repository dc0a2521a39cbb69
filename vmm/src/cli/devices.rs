//! `--disk` and `--net`: what they mean on this host, and what the guest
//! sees of them.

use std::path::PathBuf;
use std::sync::Arc;

use ft_logging::{DiskInfo, NetInfo};
use ftvm_core::platform::Devices;
use sha2::{Digest, Sha256};
use shared_disk::{DiskImage, ImageLock};
use vmm::host::Tap;

use super::error::CliError;

#[derive(Debug, Clone)]
pub struct DiskArg {
    path: PathBuf,
    read_only: bool,
}

pub fn parse_disk(value: &str) -> Result<DiskArg, String> {
    let (path, read_only) = match value.strip_suffix(",ro") {
        Some(path) => (path, true),
        None => (value, false),
    };
    if path.is_empty() {
        return Err("the disk image's path is empty".into());
    }
    Ok(DiskArg {
        path: path.into(),
        read_only,
    })
}

#[derive(Debug, Clone)]
pub struct NetArg {
    tap: String,
    mac: Option<[u8; 6]>,
}

pub fn parse_net(value: &str) -> Result<NetArg, String> {
    let mut tap = None;
    let mut mac = None;
    for option in value.split(',') {
        match option.split_once('=') {
            Some(("tap", name)) if !name.is_empty() => tap = Some(name.to_owned()),
            Some(("mac", text)) => mac = Some(parse_mac(text)?),
            _ => return Err(format!("unknown network option `{option}`")),
        }
    }
    let tap = tap.ok_or("the network card needs tap=NAME")?;
    Ok(NetArg { tap, mac })
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let invalid = || format!("`{text}` is not a MAC address like 52:54:00:12:34:56");
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(invalid)?;
        if part.len() != 2 {
            return Err(invalid());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
    }
    if parts.next().is_some() {
        return Err(invalid());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "{text} is a multicast address; a card needs a unicast one"
        ));
    }
    Ok(mac)
}

/// A locally administered address (QEMU's prefix) from the guest's command
/// line: the same on the primary and the backup, and on a replay.
fn default_mac(cmdline: &str) -> [u8; 6] {
    let hash = Sha256::digest(format!("ftvm mac {cmdline}"));
    [0x52, 0x54, 0x00, hash[0], hash[1], hash[2]]
}

/// The host side of the guest's devices, opened before the VM starts so
/// that a missing image or TAP is refused at once.
#[derive(Debug)]
pub struct Backends {
    pub image: Option<DiskImage>,
    pub tap: Option<Arc<Tap>>,
    pub mac: Option<[u8; 6]>,
}

impl Backends {
    /// Opens them; the disk image's lock is taken as `lock` says.
    pub fn open(
        lock: ImageLock,
        disk: Option<&DiskArg>,
        net: Option<&NetArg>,
        cmdline: &str,
    ) -> Result<Self, CliError> {
        let image = disk
            .map(|disk| DiskImage::open(&disk.path, disk.read_only, lock))
            .transpose()?;
        let tap = net
            .map(|net| Tap::open(&net.tap).map(Arc::new))
            .transpose()?;
        let mac = net.map(|net| net.mac.unwrap_or_else(|| default_mac(cmdline)));
        Ok(Self { image, tap, mac })
    }

    /// What the guest sees.
    pub fn devices(&self) -> Devices {
        Devices {
            disk: self.image.as_ref().map(|image| DiskInfo {
                sectors: image.sectors(),
                read_only: image.read_only(),
            }),
            net: self.mac.map(|mac| NetInfo { mac }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_options_parse_and_bad_ones_are_named() {
        let net = parse_net("tap=ftvm0,mac=52:54:00:ab:cd:ef").unwrap();
        assert_eq!(net.tap, "ftvm0");
        assert_eq!(net.mac, Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef]));
        assert_eq!(parse_net("tap=t").unwrap().mac, None);
        assert!(
            parse_net("mac=52:54:00:ab:cd:ef")
                .unwrap_err()
                .contains("tap=NAME")
        );
        assert!(
            parse_net("tap=t,speed=10")
                .unwrap_err()
                .contains("speed=10")
        );
        assert!(parse_net("tap=t,mac=52:54:00:ab:cd").is_err());
        assert!(
            parse_net("tap=t,mac=01:00:5e:00:00:01")
                .unwrap_err()
                .contains("multicast")
        );
    }

    #[test]
    fn the_default_mac_is_unicast_local_and_follows_the_command_line() {
        let mac = default_mac("ip=10.0.0.2/24");
        assert_eq!(mac[..3], [0x52, 0x54, 0x00]);
        assert_eq!(mac, default_mac("ip=10.0.0.2/24"));
        assert_ne!(mac, default_mac("ip=10.0.0.3/24"));
    }
}
