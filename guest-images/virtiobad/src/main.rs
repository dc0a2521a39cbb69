//! Hostile driver for the virtio block device: shows that the VMM refuses
//! malformed requests and survives them.
//!
//! Written without virtio-drivers: raw register accesses ([`driver`]) and a
//! hand-built split virtqueue ([`queue`]), against the first device the
//! command line announces, which must be a block device (else `virtiobad:
//! no block device`, exit 4).
//!
//! After setting the device up and checking that a well-formed one-sector
//! read completes (`virtiobad: baseline ok`), it runs each case: prints
//! `virtiobad: case <name>`, submits the malformed request or queue, and
//! prints `virtiobad: <name>: <outcome>`, where the outcome is
//! - `ok`: completed with status 0;
//! - `ioerr`: completed with status 1 or 2;
//! - `dropped`: used with length 0 and the status byte untouched;
//! - `ignored`: not used within 10 timer ticks (100 ms);
//! - `odd len=<n> status=<s>`: used in any other way.
//!
//! After each case it resets the device, sets it up afresh and needs a
//! well-formed read to complete with status 0 within 2 s: `virtiobad:
//! recovery ok`, or `virtiobad: recovery: <outcome>` and `virtiobad:
//! recovery failed`, exit 1. A setup that fails prints `virtiobad: setup
//! failed: <reason>`, exit 1. At the end: `virtiobad: all cases survived`,
//! exit 0.
#![no_std]
#![no_main]

mod driver;
mod queue;

use rt::print::{print, print_dec};
use rt::{BootInfo, pit, virtio_mmio};

use driver::Driver;
use queue::{Desc, NEXT, QUEUE_SIZE, SECTOR_SIZE, SHARED, UsedElem, WRITE};

rt::entry!(main);

const EXIT_FAILED: u8 = 1;
const EXIT_NO_DEVICE: u8 = 4;

const TICK_HZ: u32 = 100;
/// How long a malformed request may take before it counts as ignored.
const CASE_TICKS: u64 = 10;
/// How long a well-formed read may take.
const RECOVERY_TICKS: u64 = 200;

/// virtio-blk request type VIRTIO_BLK_T_IN (a read).
const REQUEST_IN: u32 = 0;
/// Put in the status byte before a request; no device writes this value.
const STATUS_PENDING: u8 = 0xff;

/// A malformed request or queue, given the end of RAM.
struct Case {
    name: &'static str,
    run: fn(&mut Driver, u64) -> Result<Outcome, &'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "desc-index-out-of-range",
        run: |driver, _| {
            read_request();
            submit(driver, QUEUE_SIZE as u16)
        },
    },
    Case {
        name: "looping-chain",
        run: |driver, _| {
            read_request();
            let data = SHARED.desc[1].get();
            SHARED.desc[1].set(Desc { next: 0, ..data });
            submit(driver, 0)
        },
    },
    Case {
        name: "buffer-beyond-ram",
        run: |driver, ram_end| {
            read_request();
            let data = SHARED.desc[1].get();
            SHARED.desc[1].set(Desc {
                addr: ram_end,
                ..data
            });
            submit(driver, 0)
        },
    },
    Case {
        name: "buffer-straddles-ram-end",
        run: |driver, ram_end| {
            read_request();
            let data = SHARED.desc[1].get();
            let addr = ram_end.saturating_sub(SECTOR_SIZE as u64 / 2);
            SHARED.desc[1].set(Desc { addr, ..data });
            submit(driver, 0)
        },
    },
    Case {
        name: "writable-header",
        run: |driver, _| {
            read_request();
            let header = SHARED.desc[0].get();
            let flags = header.flags | WRITE;
            SHARED.desc[0].set(Desc { flags, ..header });
            submit(driver, 0)
        },
    },
    Case {
        name: "no-status-descriptor",
        run: |driver, _| {
            read_request();
            let header = SHARED.desc[0].get();
            SHARED.desc[0].set(Desc { flags: 0, ..header });
            submit(driver, 0)
        },
    },
    Case {
        name: "read-into-readable-buffer",
        run: |driver, _| {
            read_request();
            let data = SHARED.desc[1].get();
            SHARED.desc[1].set(Desc {
                flags: NEXT,
                ..data
            });
            submit(driver, 0)
        },
    },
    Case {
        name: "length-0xffffffff",
        run: |driver, _| {
            read_request();
            let data = SHARED.desc[1].get();
            SHARED.desc[1].set(Desc {
                len: u32::MAX,
                ..data
            });
            submit(driver, 0)
        },
    },
    Case {
        name: "avail-index-jump",
        run: |driver, _| {
            // Every slot names the well-formed chain at 0, but the index
            // claims far more heads than the queue holds.
            read_request();
            driver.publish(QUEUE_SIZE as u16 * 100);
            Ok(outcome(driver.wait(CASE_TICKS)))
        },
    },
    Case {
        name: "rings-outside-ram",
        run: |driver, ram_end| {
            driver.setup(Some(ram_end))?;
            driver.publish(1);
            Ok(outcome(driver.wait(CASE_TICKS)))
        },
    },
];

fn main(boot: &BootInfo) -> u8 {
    let device = virtio_mmio::devices(boot.cmdline).next();
    let Some(device) = device.filter(|d| d.device_id() == Some(virtio_mmio::DEVICE_ID_BLOCK))
    else {
        print("virtiobad: no block device\n");
        return EXIT_NO_DEVICE;
    };
    let Some(ram_end) = boot.ram().map(|range| range.end).max() else {
        rt::fatal("virtiobad: no RAM in the memory map")
    };
    device.enable_interrupt();
    pit::start_ticks(TICK_HZ);

    let mut driver = Driver::new(device);
    match fresh_read(&mut driver) {
        Ok(Outcome::Ok) => print("virtiobad: baseline ok\n"),
        Ok(outcome) => return report_failure("baseline: ", &outcome),
        Err(reason) => return setup_failed(reason),
    }
    for case in CASES {
        print("virtiobad: case ");
        print(case.name);
        print("\n");
        let outcome = match (case.run)(&mut driver, ram_end) {
            Ok(outcome) => outcome,
            Err(reason) => return setup_failed(reason),
        };
        print("virtiobad: ");
        print(case.name);
        print(": ");
        outcome.print();
        print("\n");
        let recovery = match fresh_read(&mut driver) {
            Ok(Outcome::Ok) => None,
            Ok(outcome) => Some(report_failure("recovery: ", &outcome)),
            Err(reason) => Some(setup_failed(reason)),
        };
        if let Some(status) = recovery {
            print("virtiobad: recovery failed\n");
            return status;
        }
        print("virtiobad: recovery ok\n");
    }
    print("virtiobad: all cases survived\n");
    0
}

/// Resets and sets up the device afresh and submits a well-formed read; a
/// completion of another chain than that read's is odd.
fn fresh_read(driver: &mut Driver) -> Result<Outcome, &'static str> {
    driver.setup(None)?;
    read_request();
    driver.submit(0);
    let used = driver.wait(RECOVERY_TICKS);
    Ok(match (outcome(used), used) {
        (Outcome::Ok, Some(element)) if element.id != 0 => odd(element),
        (outcome, _) => outcome,
    })
}

fn report_failure(what: &str, outcome: &Outcome) -> u8 {
    print("virtiobad: ");
    print(what);
    outcome.print();
    print("\n");
    EXIT_FAILED
}

fn setup_failed(reason: &str) -> u8 {
    print("virtiobad: setup failed: ");
    print(reason);
    print("\n");
    EXIT_FAILED
}

/// Writes a well-formed one-sector read of sector 0 as the chain 0 -> 1 ->
/// 2: header, data buffer, status byte.
fn read_request() {
    SHARED.header.set((u128::from(REQUEST_IN)).to_le_bytes());
    SHARED.status.set(STATUS_PENDING);
    SHARED.desc[0].set(Desc {
        addr: SHARED.header.addr(),
        len: 16,
        flags: NEXT,
        next: 1,
    });
    SHARED.desc[1].set(Desc {
        addr: SHARED.data.addr(),
        len: SECTOR_SIZE as u32,
        flags: NEXT | WRITE,
        next: 2,
    });
    SHARED.desc[2].set(Desc {
        addr: SHARED.status.addr(),
        len: 1,
        flags: WRITE,
        next: 0,
    });
}

fn submit(driver: &mut Driver, head: u16) -> Result<Outcome, &'static str> {
    driver.submit(head);
    Ok(outcome(driver.wait(CASE_TICKS)))
}

enum Outcome {
    Ok,
    IoErr,
    Dropped,
    Ignored,
    Odd { id: u32, len: u32, status: u8 },
}

/// What became of the request, from its used element and status byte.
fn outcome(used: Option<UsedElem>) -> Outcome {
    let Some(element) = used else {
        return Outcome::Ignored;
    };
    match SHARED.status.get() {
        0 => Outcome::Ok,
        1 | 2 => Outcome::IoErr,
        STATUS_PENDING if element.len == 0 => Outcome::Dropped,
        _ => odd(element),
    }
}

fn odd(element: UsedElem) -> Outcome {
    Outcome::Odd {
        id: element.id,
        len: element.len,
        status: SHARED.status.get(),
    }
}

impl Outcome {
    fn print(&self) {
        match self {
            Self::Ok => print("ok"),
            Self::IoErr => print("ioerr"),
            Self::Dropped => print("dropped"),
            Self::Ignored => print("ignored"),
            Self::Odd { id, len, status } => {
                print("odd id=");
                print_dec(u64::from(*id));
                print(" len=");
                print_dec(u64::from(*len));
                print(" status=");
                print_dec(u64::from(*status));
            }
        }
    }
}
