//! Any bytes as a guest's accesses to the 8254's ports (0x40-0x43, 0x61)
//! with virtual time moving on between them: it never panics, and when it
//! says channel 0's OUT next rises at t, advancing to t reports that edge
//! and advancing to just before t does not.
#![no_main]

use ftvm_core::devices::pit::Pit;
use libfuzzer_sys::fuzz_target;

const PORTS: [u16; 5] = [0x40, 0x41, 0x42, 0x43, 0x61];

fuzz_target!(|data: &[u8]| {
    let mut pit = Pit::new();
    let mut now = 0u64;
    for step in data.chunks_exact(3) {
        let (code, a, b) = (step[0], step[1], step[2]);
        let port = PORTS[usize::from(code >> 2) % PORTS.len()];
        match code & 3 {
            0 => {
                pit.read(port);
            }
            1 => pit.write(port, a),
            _ => {
                // Up to about 55 ms of virtual time.
                now += u64::from(u16::from_le_bytes([a, b])) * 838;
                pit.advance(now);
            }
        }
        if let Some(edge) = pit.next_irq0_ns() {
            assert!(edge > now, "the next edge {edge} is not after {now}");
            let mut at_edge = pit.clone();
            assert!(at_edge.advance(edge) >= 1, "no edge at {edge}: {pit:?}");
            let mut before = pit.clone();
            assert_eq!(before.advance(edge - 1), 0, "an edge before {edge}: {pit:?}");
        }
    }
});
