//! A Redis server: kvcore's commands over smoltcp TCP on a virtio network
//! device, made durable in a log on a virtio block device.
//!
//! Command line: the VMM's `virtio_mmio.device=` words, which must announce
//! a network device and a block device, and
//!
//! - `ip=A.B.C.D/N`: the server's address and prefix length (required);
//! - `gw=A.B.C.D`: a default gateway (optional).
//!
//! At boot the store is rebuilt from the log on the disk (kvcore's
//! `journal`; a blank disk gets a new log); once its port is open the
//! server prints `kvstore: <n> keys restored, listening on <ip>:6379`. It
//! serves RESP2, RESP3 and inline requests to several clients at once and
//! never exits by itself. Every change is written to the log and flushed
//! before any client hears of it; a change that does not fit on the disk
//! or whose write fails is answered `-ERR disk full` or `-ERR disk write
//! failed`. The log is compacted in the background as it fills.
//!
//! Exit statuses: 2 no network device (`kvstore: no network device`), 3
//! no block device (`kvstore: no block device`), 4 a missing or malformed
//! `ip=` or `gw=` (`kvstore: bad ip=<value>`), 5 a device that cannot be set
//! up, 6 the log cannot be read, 7 the disk cannot hold a log (too small,
//! another format, or more data than the guest's memory); the runtime's
//! 101 and 102 otherwise.
#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod config;
mod disk;
mod server;
mod store;

use kvcore::Kv;
use kvcore::journal::{Journal, OpenError};
use rt::print::{print, print_bytes, print_dec};
use rt::{BootInfo, cmdline, cmos, cpu, virtio_mmio};
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address};
use virtio::blk::BlockDevice;
use virtio::net::NetDevice;

use crate::clock::Clock;
use crate::config::Config;
use crate::disk::BlockDisk;
use crate::server::Server;
use crate::store::Store;

rt::entry!(main);

const EXIT_NO_NET: u8 = 2;
const EXIT_NO_DISK: u8 = 3;
const EXIT_BAD_CONFIG: u8 = 4;
const EXIT_DEVICE_SETUP: u8 = 5;
const EXIT_DISK_READ: u8 = 6;
const EXIT_DISK_UNUSABLE: u8 = 7;

fn main(boot: &BootInfo) -> u8 {
    virtio::heap::init(boot);
    let Some(net_device) = virtio_mmio::find(boot.cmdline, virtio_mmio::DEVICE_ID_NET) else {
        print("kvstore: no network device\n");
        return EXIT_NO_NET;
    };
    let Some(disk_device) = virtio_mmio::find(boot.cmdline, virtio_mmio::DEVICE_ID_BLOCK) else {
        print("kvstore: no block device\n");
        return EXIT_NO_DISK;
    };
    let config = match config::parse(boot.cmdline) {
        Ok(config) => config,
        Err(error) => {
            let key = error.key();
            print("kvstore: bad ");
            print(key);
            print("=");
            print_bytes(cmdline::param(boot.cmdline, key.as_bytes()).unwrap_or_default());
            print("\n");
            return EXIT_BAD_CONFIG;
        }
    };
    let disk = match BlockDevice::new(disk_device) {
        Ok(disk) => disk,
        Err(error) => return setup_failed("block", error.name()),
    };
    let mut net = match NetDevice::new(net_device) {
        Ok(net) => net,
        Err(error) => return setup_failed("network", error.name()),
    };

    let mut clock = Clock::start();
    let mut kv = Kv::new();
    let limit = store::memory().limit;
    let now = clock.now_ms();
    let opened = Journal::open(BlockDisk(disk), &mut kv, now, &mut || {
        store::memory().used <= limit
    });
    let journal = match opened {
        Ok(journal) => journal,
        Err(error) => {
            print("kvstore: cannot use the log: ");
            print(error.message());
            print("\n");
            return match error {
                OpenError::Disk(_) => EXIT_DISK_READ,
                _ => EXIT_DISK_UNUSABLE,
            };
        }
    };
    let mut store = Store::new(kv, journal, clock);

    let mut iface = interface(&mut net, &config);
    let mut sockets = SocketSet::new(alloc::vec::Vec::new());
    let mut server = Server::new(&mut sockets);
    print("kvstore: ");
    print_dec(store.kv.len() as u64);
    print(" keys restored, listening on ");
    print_address(config.address.address());
    print(":");
    print_dec(u64::from(server::PORT));
    print("\n");

    loop {
        iface.poll(clock::instant(), &mut net, &mut sockets);
        store.clock.new_round();
        let mut progress = server.serve(&mut sockets, &mut store);
        let committed = store.commit();
        server.settle(committed);
        progress |= server.send(&mut sockets);
        progress |= store.maintain(server.clients());
        if progress {
            // Replies were queued, or work remains: poll again.
            continue;
        }
        net.reclaim_transmitted();
        let due = clock::deadline(iface.poll_delay(clock::instant(), &sockets));
        cpu::wait_until(|| net.has_events() || clock::reached(due));
    }
}

/// The smoltcp interface on `net` with the configured address and route.
fn interface(net: &mut NetDevice, config: &Config) -> Interface {
    let mut iface_config = smoltcp::iface::Config::new(EthernetAddress(net.mac()).into());
    iface_config.random_seed = seed();
    let mut iface = Interface::new(iface_config, net, clock::instant());
    iface.update_ip_addrs(|addresses| {
        // The list starts empty and holds several.
        let _ = addresses.push(IpCidr::Ipv4(config.address));
    });
    if let Some(gateway) = config.gateway {
        // The route table starts empty and holds several.
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
    }
    iface
}

/// Seeds smoltcp's initial sequence numbers with the time of day, so that
/// a restarted server does not reuse its previous connections' numbers.
/// The CMOS clock is a recorded input, so replay sees the same seed.
fn seed() -> u64 {
    let time = cmos::read_time();
    u64::from(time.hours) * 3600 + u64::from(time.minutes) * 60 + u64::from(time.seconds)
}

fn print_address(address: Ipv4Address) {
    for (index, octet) in address.octets().into_iter().enumerate() {
        if index > 0 {
            print(".");
        }
        print_dec(u64::from(octet));
    }
}

fn setup_failed(kind: &str, error: &str) -> u8 {
    print("kvstore: ");
    print(kind);
    print(" device setup failed: ");
    print(error);
    print("\n");
    EXIT_DEVICE_SETUP
}
