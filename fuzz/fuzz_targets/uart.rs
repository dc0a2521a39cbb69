//! Any bytes as a guest's accesses to the 16550A's registers and bytes
//! arriving on its line: it never panics, never reports more room than its
//! FIFO has, and bytes that fit take exactly their room.
#![no_main]

use ftvm_core::devices::uart::Uart;
use libfuzzer_sys::fuzz_target;

/// The 16550A's receive FIFO.
const FIFO: usize = 16;

fuzz_target!(|data: &[u8]| {
    let mut uart = Uart::new();
    for step in data.chunks_exact(2) {
        let (code, value) = (step[0], step[1]);
        let register = (code >> 2) & 7;
        match code & 3 {
            0 => {
                uart.read(register);
            }
            1 => {
                uart.write(register, value);
            }
            2 => {
                let room = uart.rx_room();
                let n = usize::from(value).min(room);
                uart.receive(&vec![value; n]);
                assert_eq!(uart.rx_room(), room - n, "{uart:?}");
            }
            _ => {
                uart.irq();
            }
        }
        assert!(uart.rx_room() <= FIFO, "{uart:?}");
    }
});
