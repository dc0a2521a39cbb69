//! The guest's network on this host: a TAP device. A reader thread turns
//! arriving frames into host inputs (applied, and logged, at exits);
//! transmitted frames are written to it once the output rule allows.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;
use tracing::{info, warn};

use super::HostInput;

/// Ethertype of RARP, which announces a MAC address to switches.
const ETHERTYPE_RARP: u16 = 0x8035;
/// Announcements after a takeover, as QEMU's announce-self sends them.
const ANNOUNCEMENTS: u32 = 5;

/// Why the TAP device of `--net` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// /dev/net/tun cannot be opened.
    #[error("cannot open /dev/net/tun for TAP device {name}: {source}")]
    OpenTun {
        /// The TAP device.
        name: String,
        /// The error underneath.
        source: io::Error,
    },
    /// The TAP device cannot be created or attached.
    #[error("cannot create or attach TAP device {name}: {source}")]
    Attach {
        /// The TAP device.
        name: String,
        /// The error underneath.
        source: io::Error,
    },
    /// The name is not a valid interface name.
    #[error("TAP device name {0:?} must be 1 to 15 bytes of letters, digits, '-', '_' or '.'")]
    Name(String),
}

/// An `ifreq` naming interface `name` (checked to fit) with `flags`.
fn ifreq(name: &str, flags: libc::c_int) -> libc::ifreq {
    let mut ifr_name = [0; libc::IFNAMSIZ];
    for (to, from) in ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    libc::ifreq {
        ifr_name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru {
            // The flags are a short in the kernel's ifreq.
            ifru_flags: flags as libc::c_short,
        },
    }
}

/// An open TAP device; clones share it.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens TAP device `name`, creating it if it does not exist, and sets
    /// its link up.
    pub fn open(name: &str) -> Result<Self, TapError> {
        let valid = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || !name.chars().all(valid) {
            return Err(TapError::Name(name.to_owned()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|source| TapError::OpenTun {
                name: name.to_owned(),
                source,
            })?;
        let request = ifreq(name, libc::IFF_TAP | libc::IFF_NO_PI);
        // SAFETY: TUNSETIFF reads an ifreq, which `request` is, and the fd
        // is the TUN clone device just opened.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &request) };
        if ret < 0 {
            return Err(TapError::Attach {
                name: name.to_owned(),
                source: io::Error::last_os_error(),
            });
        }
        if let Err(error) = set_up(name) {
            warn!(tap = name, %error, "cannot set the TAP device's link up");
        }
        Ok(Self {
            file,
            name: name.to_owned(),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        (&self.file).write_all(frame)
    }

    /// Discards the frames that queued on the device (a backup's, before
    /// it goes live: they belong to a past it did not run).
    pub fn discard_queued(&self) -> io::Result<usize> {
        let fd = self.file.as_raw_fd();
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut buffer = [0u8; 65536];
        let mut discarded = 0;
        // SAFETY: poll reads one pollfd, which `poll` is, for no time.
        while unsafe { libc::poll(&mut poll, 1, 0) } > 0 && poll.revents & libc::POLLIN != 0 {
            // One read takes one frame, whatever its length.
            let _frame_len = (&self.file).read(&mut buffer)?;
            discarded += 1;
        }
        Ok(discarded)
    }

    /// Starts the thread that hands every arriving frame to the vCPU thread.
    pub fn spawn_reader(&self, inputs: Sender<HostInput>) -> io::Result<()> {
        let mut file = self.file.try_clone()?;
        let name = self.name.clone();
        thread::Builder::new()
            .name("tap-reader".into())
            .spawn(move || {
                let mut buffer = vec![0u8; 65536];
                loop {
                    match file.read(&mut buffer) {
                        Ok(0) => return,
                        Ok(n) => {
                            if inputs.send(HostInput::Frame(buffer[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => {
                            warn!(tap = name, %error, "cannot read the TAP device; the guest receives no more frames");
                            return;
                        }
                    }
                }
            })?;
        Ok(())
    }

    /// Announces `mac` on the network with RARP frames, as hypervisors do
    /// after a migration, so that switches send its traffic here.
    pub fn announce(&self, mac: [u8; 6]) -> io::Result<()> {
        let file = self.file.try_clone()?;
        let frame = rarp(mac);
        let name = self.name.clone();
        thread::Builder::new()
            .name("tap-announce".into())
            .spawn(move || {
                // 0, 50, 150, 300, 500 ms: the gaps grow as QEMU's do.
                for round in 0..ANNOUNCEMENTS {
                    if let Err(error) = (&file).write_all(&frame) {
                        warn!(tap = name, %error, "cannot announce the guest's MAC");
                        return;
                    }
                    thread::sleep(Duration::from_millis(50 * u64::from(round + 1)));
                }
                info!(tap = name, "announced the guest's MAC address");
            })?;
        Ok(())
    }
}

/// A RARP "request reverse" broadcast from `mac` about itself.
pub fn rarp(mac: [u8; 6]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETHERTYPE_RARP.to_be_bytes());
    frame.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    frame.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&3u16.to_be_bytes()); // request reverse
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0; 4]);
    frame.resize(60, 0);
    frame
}

/// Sets the link of interface `name` up.
fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: a plain socket() call; the result is checked.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut request = ifreq(name, 0);
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an ifreq, which
    // `request` is, its flags member the one they use; `socket` is open
    // until closed below.
    let result = unsafe {
        if libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) < 0 {
            Err(io::Error::last_os_error())
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(socket, libc::SIOCSIFFLAGS, &request) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closes the socket opened above, once.
    unsafe { libc::close(socket) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rarp_announcement_names_the_mac_as_sender_and_target() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let frame = rarp(mac);
        assert_eq!(frame.len(), 60);
        assert_eq!(frame[..6], [0xff; 6]);
        assert_eq!(frame[6..12], mac);
        assert_eq!(frame[12..14], [0x80, 0x35]);
        assert_eq!(frame[20..22], [0, 3]);
        assert_eq!(frame[22..28], mac);
        assert_eq!(frame[32..38], mac);
    }

    #[test]
    fn bad_names_are_refused_before_any_system_call() {
        for name in ["", "a-name-far-too-long", "sp ace", "slash/"] {
            assert!(
                matches!(Tap::open(name), Err(TapError::Name(_))),
                "{name:?}"
            );
        }
    }
}
