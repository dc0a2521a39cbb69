//! Intel 8254 programmable interval timer at 0x40–0x43, and the PC's port
//! 0x61 (channel 2 gate, speaker data, refresh toggle, OUT2).
//!
//! The PIT is never stepped clock by clock: every count and OUT level is
//! computed from the ticks elapsed since a count was loaded, `(t - t_load) * PIT_HZ /
//! 1e9` rounded down in integer arithmetic, so a latch, a reload and a read
//! taken at the same virtual time agree and nothing drifts. Time only moves
//! through [`Pit::advance`].
//!
//! BCD counting is treated as binary (a BCD count of 0x9999 counts 0x9999
//! ticks); the BCD bit is kept for the status byte. Channels 0 and 1 have
//! their gates tied high; channel 2's gate is port 0x61 bit 0. While channel
//! 2's gate pauses a mode 0 or 4 count, the clock phase restarts when the
//! gate rises again (less than one tick of difference).

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::state::{InvalidState, check};

/// Input clock of every channel.
pub const PIT_HZ: u64 = 1_193_182;

const NS_PER_SEC: u128 = 1_000_000_000;

const PORT_CHANNEL0: u16 = 0x40;
const PORT_CHANNEL2: u16 = 0x42;
const PORT_CONTROL: u16 = 0x43;
const PORT_B: u16 = 0x61;

/// Control word: latch command when RW = 00; read-back when SC = 11.
const CONTROL_RW_MASK: u8 = 0x30;
const CONTROL_READ_BACK: u8 = 0xc0;
const READ_BACK_NO_COUNT: u8 = 0x20;
const READ_BACK_NO_STATUS: u8 = 0x10;

const PORT_B_GATE2: u8 = 0x01;
const PORT_B_SPEAKER: u8 = 0x02;
const PORT_B_REFRESH: u8 = 0x10;
const PORT_B_OUT2: u8 = 0x20;

/// Power-on control bits: lo/hi access, mode 2, binary, with no count, so
/// no channel counts until the guest programs it. The datasheet leaves the
/// power-on state undefined; mode 2 holds OUT high, so a guest programming
/// mode 2 or 3 sees no rising edge, and no spurious first tick, on IRQ 0.
const POWER_ON_CONTROL: u8 = 0x34;

// Guest misuses logged once per PIT (bits of `Pit::warned`).
const WARN_PORT: u8 = 1 << 0;

/// How a channel's count register is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Lo,
    Hi,
    LoHi,
}

/// A counter's time base in ticks:
/// `offset + (t - since_ns) * PIT_HZ / 1e9`, frozen at `offset` while paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Clock {
    since_ns: u64,
    offset: u64,
    paused: bool,
}

impl Clock {
    fn ticks(&self, t: u64) -> u64 {
        if self.paused {
            return self.offset;
        }
        let elapsed = u128::from(t - self.since_ns) * u128::from(PIT_HZ) / NS_PER_SEC;
        self.offset + elapsed as u64
    }

    /// The earliest time at which `ticks` reaches `tick`.
    fn time_of(&self, tick: u64) -> Option<u64> {
        if self.paused {
            return None;
        }
        let ns = (u128::from(tick - self.offset) * NS_PER_SEC).div_ceil(u128::from(PIT_HZ));
        u64::try_from(u128::from(self.since_ns) + ns).ok()
    }
}

/// A count that enters the counting element (CE) at `load_tick`; before
/// that the counter shows `ce_before` and `out_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Segment {
    load_tick: u64,
    /// 1..=65536 (a written 0 means 65536).
    count: u32,
    out_before: bool,
    ce_before: u16,
}

/// CE in mode 3: an even count N steps N, N-2, ..., 2 in each half; an odd
/// one steps N, N-1, N-3, ..., 2 while OUT is high and N, N-3, ..., 2 while
/// it is low.
fn square_wave_ce(n: u64, p: u64) -> u64 {
    if n.is_multiple_of(2) {
        return n - 2 * (p % (n / 2));
    }
    let high = n.div_ceil(2);
    match p.checked_sub(high) {
        None if p == 0 => n,
        None => n - 1 - 2 * (p - 1),
        Some(0) => n,
        Some(q) => n - 3 - 2 * (q - 1),
    }
}

impl Segment {
    /// CE and OUT at tick `k` in `mode` (0..=5).
    fn at(&self, mode: u8, k: u64) -> (u16, bool) {
        let Some(j) = k.checked_sub(self.load_tick) else {
            return (self.ce_before, self.out_before);
        };
        let n = u64::from(self.count);
        // `as u16` keeps the counter's 16 bits: 65536 shows as 0, and the
        // one-shot modes wrap around past zero and keep counting.
        match mode {
            // OUT low for the one clock at count 1, then reload.
            2 => {
                let p = j % n;
                ((n - p) as u16, p != n - 1)
            }
            // OUT high for ceil(N/2) clocks, low for floor(N/2).
            3 => {
                let p = j % n;
                (square_wave_ce(n, p) as u16, p < n.div_ceil(2))
            }
            // OUT rises at terminal count and stays high.
            0 | 1 => (n.wrapping_sub(j) as u16, j >= n),
            // OUT strobes low for the one clock at terminal count.
            _ => (n.wrapping_sub(j) as u16, j != n),
        }
    }

    /// Whether OUT rises at the load itself (a mode 2/3 reload after OUT
    /// was low).
    fn rises_at_load(&self, mode: u8) -> bool {
        !self.out_before && self.at(mode, self.load_tick).1
    }

    /// Rising edges of OUT at ticks in (a, b].
    fn rising_edges(&self, mode: u8, a: u64, b: u64) -> u64 {
        let l = self.load_tick;
        let at_load = u64::from(a < l && l <= b && self.rises_at_load(mode));
        if b <= l {
            return at_load;
        }
        // Edges after the load, at j = ticks since the load, in (ja, jb].
        let (ja, jb) = (a.max(l) - l, b - l);
        let n = u64::from(self.count);
        let after = match mode {
            2 | 3 if n >= 2 => jb / n - ja / n,
            2 | 3 => 0,
            0 | 1 => u64::from(ja < n && n <= jb),
            _ => u64::from(ja <= n && n < jb),
        };
        at_load + after
    }

    /// The first tick after `k` at which OUT rises.
    fn next_edge(&self, mode: u8, k: u64) -> Option<u64> {
        let l = self.load_tick;
        if k < l && self.rises_at_load(mode) {
            return Some(l);
        }
        let j0 = k.saturating_sub(l);
        let n = u64::from(self.count);
        let j = match mode {
            2 | 3 => (n >= 2).then(|| (j0 / n + 1) * n)?,
            0 | 1 => n,
            _ => n + 1,
        };
        (j > j0).then_some(l + j)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Counter {
    /// Not counting: no count yet, a mode 1/5 count waiting for its
    /// trigger, mode 2/3 with the gate low, or mode 0 between the two bytes
    /// of a count. CE and OUT hold.
    Stopped {
        ce: u16,
        out: bool,
        null_count: bool,
    },
    /// Counting `seg`, and in modes 2/3 possibly a count written meanwhile
    /// that takes over at the end of the current period.
    Running {
        clock: Clock,
        seg: Segment,
        next: Option<Segment>,
    },
}

/// One 8254 counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Channel {
    /// Bits 5:0 of the last control word (RW, mode, BCD), as the status
    /// byte reports them.
    control: u8,
    gate: bool,
    /// The last complete count written (CR), which retriggers and gate
    /// edges reload.
    count_reg: Option<u32>,
    write_msb_next: bool,
    low_byte_written: u8,
    read_msb_next: bool,
    latched_count: Option<u16>,
    latched_status: Option<u8>,
    counter: Counter,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            control: POWER_ON_CONTROL,
            gate,
            count_reg: None,
            write_msb_next: false,
            low_byte_written: 0,
            read_msb_next: false,
            latched_count: None,
            latched_status: None,
            counter: Counter::Stopped {
                ce: 0,
                out: true,
                null_count: true,
            },
        }
    }

    /// The operating mode; 6 and 7 are 2 and 3.
    fn mode(&self) -> u8 {
        match (self.control >> 1) & 7 {
            6 => 2,
            7 => 3,
            mode => mode,
        }
    }

    fn access(&self) -> Access {
        match self.control & CONTROL_RW_MASK {
            0x10 => Access::Lo,
            0x20 => Access::Hi,
            _ => Access::LoHi,
        }
    }

    /// CE and OUT at `now`.
    fn state(&self, now: u64) -> (u16, bool) {
        match &self.counter {
            Counter::Stopped { ce, out, .. } => (*ce, *out),
            Counter::Running { clock, seg, next } => {
                let k = clock.ticks(now);
                let seg = match next {
                    Some(next) if k >= next.load_tick => next,
                    _ => seg,
                };
                seg.at(self.mode(), k)
            }
        }
    }

    fn out(&self, now: u64) -> bool {
        self.state(now).1
    }

    /// Whether the last count written has not reached CE yet.
    fn null_count(&self, now: u64) -> bool {
        match &self.counter {
            Counter::Stopped { null_count, .. } => *null_count,
            Counter::Running { clock, seg, next } => {
                next.is_some() || clock.ticks(now) < seg.load_tick
            }
        }
    }

    fn status(&self, now: u64) -> u8 {
        (u8::from(self.out(now)) << 7) | (u8::from(self.null_count(now)) << 6) | self.control
    }

    /// Rising edges of OUT in (from, to].
    fn rising_edges(&self, from: u64, to: u64) -> u64 {
        let Counter::Running { clock, seg, next } = &self.counter else {
            return 0;
        };
        let mode = self.mode();
        let (a, b) = (clock.ticks(from), clock.ticks(to));
        match next {
            Some(next) if next.load_tick <= b => {
                let switch = next.load_tick - 1;
                let before = if a < switch {
                    seg.rising_edges(mode, a, switch)
                } else {
                    0
                };
                before + next.rising_edges(mode, a.max(switch), b)
            }
            _ => seg.rising_edges(mode, a, b),
        }
    }

    /// The earliest time after `now` at which OUT rises.
    fn next_edge_ns(&self, now: u64) -> Option<u64> {
        let Counter::Running { clock, seg, next } = &self.counter else {
            return None;
        };
        let mode = self.mode();
        let k = clock.ticks(now);
        let tick = match next {
            Some(next) if k < next.load_tick => match seg.next_edge(mode, k) {
                Some(tick) if tick < next.load_tick => Some(tick),
                _ => next.next_edge(mode, next.load_tick - 1),
            },
            Some(next) => next.next_edge(mode, k),
            None => seg.next_edge(mode, k),
        }?;
        clock.time_of(tick)
    }

    /// Makes a pending mode 2/3 count current once its period has come.
    fn settle(&mut self, now: u64) {
        if let Counter::Running { clock, seg, next } = &mut self.counter
            && let Some(pending) = *next
            && clock.ticks(now) >= pending.load_tick
        {
            *seg = pending;
            *next = None;
        }
    }

    /// Starts counting `count` from the next clock.
    fn start(&mut self, now: u64, count: u32, out_before: bool) {
        let (ce_before, _) = self.state(now);
        // A low gate holds modes 0 and 4 (only channel 2's gate can be low).
        let paused = matches!(self.mode(), 0 | 4) && !self.gate;
        self.counter = Counter::Running {
            clock: Clock {
                since_ns: now,
                offset: 0,
                paused,
            },
            seg: Segment {
                load_tick: 1,
                count,
                out_before,
                ce_before,
            },
            next: None,
        };
    }

    fn program(&mut self, now: u64, control: u8) {
        let (ce, _) = self.state(now);
        self.control = control & 0x3f;
        self.count_reg = None;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latched_count = None;
        self.latched_status = None;
        self.counter = Counter::Stopped {
            ce,
            out: self.mode() != 0,
            null_count: true,
        };
    }

    fn latch_count(&mut self, now: u64) {
        // A second latch before the first is read out is ignored.
        if self.latched_count.is_none() {
            self.latched_count = Some(self.state(now).0);
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status(now));
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let value = self.latched_count.unwrap_or_else(|| self.state(now).0);
        let [lo, hi] = value.to_le_bytes();
        let (byte, complete) = match self.access() {
            Access::Lo => (lo, true),
            Access::Hi => (hi, true),
            Access::LoHi => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    (lo, false)
                } else {
                    (hi, true)
                }
            }
        };
        if complete {
            self.latched_count = None;
        }
        byte
    }

    fn write(&mut self, now: u64, value: u8) {
        let count = match self.access() {
            Access::Lo => u32::from(value),
            Access::Hi => u32::from(value) << 8,
            Access::LoHi if !self.write_msb_next => {
                self.write_msb_next = true;
                self.low_byte_written = value;
                if self.mode() == 0 {
                    // Mode 0: the first byte stops counting and drops OUT.
                    let (ce, _) = self.state(now);
                    self.counter = Counter::Stopped {
                        ce,
                        out: false,
                        null_count: true,
                    };
                }
                return;
            }
            Access::LoHi => {
                self.write_msb_next = false;
                u32::from(u16::from_le_bytes([self.low_byte_written, value]))
            }
        };
        self.load(now, if count == 0 { 0x1_0000 } else { count });
    }

    /// A complete count was written.
    fn load(&mut self, now: u64, count: u32) {
        self.count_reg = Some(count);
        let mode = self.mode();
        let (_, out) = self.state(now);
        match (mode, &mut self.counter) {
            // A new count restarts counting at the next clock; mode 0 drops
            // OUT until the new terminal count.
            (0, _) => self.start(now, count, false),
            (4, _) => self.start(now, count, out),
            // While counting, a new count waits for the end of the period.
            (2 | 3, Counter::Running { clock, seg, next }) => {
                let k = clock.ticks(now);
                match k.checked_sub(seg.load_tick) {
                    None => seg.count = count,
                    Some(j) => {
                        let n = u64::from(seg.count);
                        let end = seg.load_tick + (j / n + 1) * n;
                        let (ce_before, out_before) = seg.at(mode, end - 1);
                        *next = Some(Segment {
                            load_tick: end,
                            count,
                            out_before,
                            ce_before,
                        });
                    }
                }
            }
            (2 | 3, Counter::Stopped { .. }) if self.gate => self.start(now, count, out),
            // Mode 2/3 with the gate low, modes 1/5 before a trigger: the
            // count waits in CR for a gate rising edge.
            (_, Counter::Stopped { null_count, .. }) => *null_count = true,
            // Modes 1/5 mid one-shot: the next trigger uses the new count.
            (_, Counter::Running { .. }) => {}
        }
    }

    fn set_gate(&mut self, now: u64, gate: bool) {
        if gate == self.gate {
            return;
        }
        let (ce, out) = self.state(now);
        let null_count = self.null_count(now);
        self.gate = gate;
        match (self.mode(), &mut self.counter) {
            // Modes 0/4: the gate enables counting.
            (0 | 4, Counter::Running { clock, .. }) => {
                *clock = Clock {
                    since_ns: now,
                    offset: clock.ticks(now),
                    paused: !gate,
                };
            }
            (0 | 4, Counter::Stopped { .. }) => {}
            // Modes 2/3: gate low stops counting and forces OUT high; the
            // rising edge reloads the count.
            (2 | 3, _) if !gate => {
                self.counter = Counter::Stopped {
                    ce,
                    out: true,
                    null_count,
                };
            }
            // Modes 1/5 trigger on the rising edge, and 2/3 reload.
            (_, _) if gate => {
                if let Some(count) = self.count_reg {
                    self.start(now, count, out);
                }
            }
            (_, _) => {}
        }
    }
}

/// The 8254 with port 0x61.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pit {
    now_ns: u64,
    channels: [Channel; 3],
    speaker_data: bool,
    refresh: bool,
    warned: u8,
}

/// The state of the 8254 and port 0x61: the PIT's virtual time, and each
/// channel's control word, gate, count register, byte order flip-flops,
/// latched count and status, and where its counting element is (stopped,
/// or counting a segment loaded at a tick, with a reload pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitState {
    now_ns: u64,
    channels: [Channel; 3],
    speaker_data: bool,
    refresh: bool,
}

impl PitState {
    /// The PIT's virtual time, in nanoseconds since boot.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }
}

/// No real run comes near this many PIT ticks (122 000 years); bounding a
/// state's tick counts keeps every computation on them within `u64`.
const MAX_TICKS: u64 = 1 << 62;

impl Segment {
    fn check(&self) -> Result<(), InvalidState> {
        check(
            (1..=0x1_0000).contains(&self.count) && self.load_tick <= MAX_TICKS,
            "8254",
            "a count or load tick out of range",
        )
    }
}

impl Channel {
    /// Refuses a channel state that no guest could have programmed.
    fn check(&self, index: usize, now_ns: u64) -> Result<(), InvalidState> {
        check(self.control <= 0x3f, "8254", "a control word out of range")?;
        check(
            self.gate || index == 2,
            "8254",
            "a low gate on channel 0 or 1",
        )?;
        check(
            self.count_reg
                .is_none_or(|count| (1..=0x1_0000).contains(&count)),
            "8254",
            "a count register out of range",
        )?;
        let Counter::Running { clock, seg, next } = &self.counter else {
            return Ok(());
        };
        check(
            clock.since_ns <= now_ns && clock.offset <= MAX_TICKS,
            "8254",
            "a counter clock ahead of the PIT's time",
        )?;
        seg.check()?;
        if let Some(next) = next {
            next.check()?;
            check(
                next.load_tick > clock.ticks(now_ns),
                "8254",
                "a pending reload that is already due",
            )?;
        }
        Ok(())
    }
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// Power-on state at virtual time zero: no channel programmed, channel
    /// 2's gate low.
    pub fn new() -> Self {
        Pit {
            now_ns: 0,
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            speaker_data: false,
            refresh: false,
            warned: 0,
        }
    }

    /// The virtual time of the last time sample, in nanoseconds since boot.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Its state, for a snapshot.
    pub fn state(&self) -> PitState {
        PitState {
            now_ns: self.now_ns,
            channels: self.channels.clone(),
            speaker_data: self.speaker_data,
            refresh: self.refresh,
        }
    }

    /// The PIT in `state`, refused when no guest could have reached it.
    pub fn from_state(state: &PitState) -> Result<Self, InvalidState> {
        for (index, channel) in state.channels.iter().enumerate() {
            channel.check(index, state.now_ns)?;
        }
        Ok(Pit {
            now_ns: state.now_ns,
            channels: state.channels.clone(),
            speaker_data: state.speaker_data,
            refresh: state.refresh,
            warned: 0,
        })
    }

    fn warn_once(&mut self, bit: u8) -> bool {
        let first = self.warned & bit == 0;
        self.warned |= bit;
        first
    }

    /// Moves the PIT's time to `now_ns` (virtual nanoseconds since boot;
    /// never earlier than the previous value — an earlier one is ignored)
    /// and returns how many rising edges channel 0's OUT made in
    /// (previous, now].
    pub fn advance(&mut self, now_ns: u64) -> u64 {
        if now_ns <= self.now_ns {
            return 0;
        }
        let edges = self.channels[0].rising_edges(self.now_ns, now_ns);
        self.now_ns = now_ns;
        for channel in &mut self.channels {
            channel.settle(now_ns);
        }
        edges
    }

    /// Level of channel 0's OUT at the current time.
    pub fn out0(&self) -> bool {
        self.channels[0].out(self.now_ns)
    }

    /// The earliest time in ns, strictly after the current time, at which
    /// channel 0's OUT rises (so that `advance(t)` with that t reports ≥1
    /// edge), or None when no edge will come (unprogrammed, one-shot done,
    /// gate off).
    pub fn next_irq0_ns(&self) -> Option<u64> {
        self.channels[0].next_edge_ns(self.now_ns)
    }

    /// Guest port read at the current time: 0x40–0x42 counters, 0x43
    /// control (reads 0xff), 0x61 port B.
    pub fn read(&mut self, port: u16) -> u8 {
        let now = self.now_ns;
        match port {
            PORT_CHANNEL0..=PORT_CHANNEL2 => {
                self.channels[usize::from(port - PORT_CHANNEL0)].read(now)
            }
            PORT_CONTROL => 0xff,
            PORT_B => {
                // Old software times short delays by the DRAM refresh bit;
                // flipping on every read keeps such loops moving.
                self.refresh = !self.refresh;
                let channel2 = &self.channels[2];
                (if channel2.gate { PORT_B_GATE2 } else { 0 })
                    | (if self.speaker_data { PORT_B_SPEAKER } else { 0 })
                    | (if self.refresh { PORT_B_REFRESH } else { 0 })
                    | (if channel2.out(now) { PORT_B_OUT2 } else { 0 })
            }
            _ => {
                if self.warn_once(WARN_PORT) {
                    warn!(port, "8254: read of an unknown port");
                }
                0xff
            }
        }
    }

    /// Guest port write at the current time.
    pub fn write(&mut self, port: u16, value: u8) {
        let now = self.now_ns;
        match port {
            PORT_CHANNEL0..=PORT_CHANNEL2 => {
                self.channels[usize::from(port - PORT_CHANNEL0)].write(now, value);
            }
            PORT_CONTROL if value & CONTROL_READ_BACK == CONTROL_READ_BACK => {
                for (i, channel) in self.channels.iter_mut().enumerate() {
                    if value & (2 << i) == 0 {
                        continue;
                    }
                    // Both latches at once: the status byte is read first.
                    if value & READ_BACK_NO_STATUS == 0 {
                        channel.latch_status(now);
                    }
                    if value & READ_BACK_NO_COUNT == 0 {
                        channel.latch_count(now);
                    }
                }
            }
            PORT_CONTROL => {
                let channel = &mut self.channels[usize::from(value >> 6)];
                if value & CONTROL_RW_MASK == 0 {
                    channel.latch_count(now);
                } else {
                    channel.program(now, value);
                }
            }
            PORT_B => {
                self.speaker_data = value & PORT_B_SPEAKER != 0;
                self.channels[2].set_gate(now, value & PORT_B_GATE2 != 0);
            }
            _ => {
                if self.warn_once(WARN_PORT) {
                    warn!(port, value, "8254: write to an unknown port");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Programs `channel` with lo/hi access in `mode` and writes `count`.
    fn program(pit: &mut Pit, channel: u8, mode: u8, count: u16) {
        pit.write(0x43, (channel << 6) | 0x30 | (mode << 1));
        let [lo, hi] = count.to_le_bytes();
        pit.write(0x40 + u16::from(channel), lo);
        pit.write(0x40 + u16::from(channel), hi);
    }

    fn latch_and_read(pit: &mut Pit, channel: u8) -> u16 {
        pit.write(0x43, channel << 6);
        let port = 0x40 + u16::from(channel);
        let lo = pit.read(port);
        let hi = pit.read(port);
        u16::from_le_bytes([lo, hi])
    }

    /// The time at which `ticks` PIT clocks have passed since zero.
    fn tick_ns(ticks: u64) -> u64 {
        (ticks * SEC).div_ceil(PIT_HZ)
    }

    #[test]
    fn power_on_is_silent() {
        let mut pit = Pit::new();
        assert!(pit.out0());
        assert_eq!(pit.next_irq0_ns(), None);
        assert_eq!(pit.advance(10 * SEC), 0);
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, PORT_B_OUT2);
        assert_eq!(pit.read(0x43), 0xff);
    }

    #[test]
    fn count_decreases_at_pit_rate() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 0); // 65536
        // Loaded on the first clock after the write, then one per clock.
        pit.advance(1_000_000);
        let ticks = 1_000_000 * PIT_HZ / SEC;
        assert_eq!(ticks, 1193);
        assert_eq!(latch_and_read(&mut pit, 0), (0x1_0000 - (ticks - 1)) as u16);
        pit.advance(tick_ns(1194) - 1);
        assert_eq!(latch_and_read(&mut pit, 0), (0x1_0000 - 1192) as u16);
        pit.advance(tick_ns(1194));
        assert_eq!(latch_and_read(&mut pit, 0), (0x1_0000 - 1193) as u16);
        // Unlatched lo/hi reads agree at the same instant.
        let lo = pit.read(0x40);
        let hi = pit.read(0x40);
        assert_eq!(u16::from_le_bytes([lo, hi]), (0x1_0000 - 1193) as u16);
    }

    #[test]
    fn latch_holds_until_read_out() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 50_000);
        pit.advance(10_000_000);
        pit.write(0x43, 0x00);
        let latched = 50_000 - (10_000_000 * PIT_HZ / SEC - 1);
        pit.advance(20_000_000);
        // A second latch is ignored until the first is read.
        pit.write(0x43, 0x00);
        assert_eq!(pit.read(0x40), latched as u8);
        pit.advance(30_000_000);
        assert_eq!(pit.read(0x40), (latched >> 8) as u8);
        // Released: the next reads are live.
        let live = 50_000 - (30_000_000 * PIT_HZ / SEC - 1);
        let lo = pit.read(0x40);
        let hi = pit.read(0x40);
        assert_eq!(u16::from_le_bytes([lo, hi]), live as u16);
    }

    #[test]
    fn mode2_rate_generator_100hz() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 11932);
        assert!(pit.out0(), "mode 2 OUT starts high");
        let edges = pit.advance(SEC);
        assert!((99..=101).contains(&edges), "{edges} edges");
        // Stepping through the same second in pieces gives the same total.
        let mut stepped = Pit::new();
        program(&mut stepped, 0, 2, 11932);
        let total: u64 = (1..=1000).map(|ms| stepped.advance(ms * 1_000_000)).sum();
        assert_eq!(total, edges);
    }

    #[test]
    fn mode2_out_low_for_one_clock() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 4);
        // Loaded at tick 1; count 1 at tick 4, reload at tick 5.
        pit.advance(tick_ns(4) - 1);
        assert!(pit.out0());
        pit.advance(tick_ns(4));
        assert!(!pit.out0());
        assert_eq!(latch_and_read(&mut pit, 0), 1);
        assert_eq!(pit.advance(tick_ns(5)), 1);
        assert!(pit.out0());
        assert_eq!(latch_and_read(&mut pit, 0), 4);
    }

    #[test]
    fn mode3_square_wave_100hz() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 11932);
        let edges = pit.advance(SEC);
        assert!((99..=101).contains(&edges), "{edges} edges");
        // Mode 7 is mode 3.
        let mut alias = Pit::new();
        program(&mut alias, 0, 7, 11932);
        assert_eq!(alias.advance(SEC), edges);
    }

    #[test]
    fn mode3_duty_cycle_odd_count() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 3, 5);
        // Loaded at tick 1: high for ticks 1..=3, low for 4..=5.
        let levels: Vec<bool> = (1..=11)
            .map(|t| {
                pit.advance(tick_ns(t));
                pit.out0()
            })
            .collect();
        let expected = [true, true, true, false, false];
        let expected: Vec<bool> = expected.iter().cycle().take(11).copied().collect();
        assert_eq!(levels, expected);
    }

    #[test]
    fn mode0_one_edge() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 0, 1000);
        assert!(!pit.out0());
        // OUT rises N+1 clocks after the count is written.
        assert_eq!(pit.next_irq0_ns(), Some(tick_ns(1001)));
        assert_eq!(pit.advance(tick_ns(1001) - 1), 0);
        assert_eq!(pit.advance(tick_ns(1001)), 1);
        assert!(pit.out0());
        assert_eq!(pit.next_irq0_ns(), None);
        assert_eq!(pit.advance(10 * SEC), 0);
        assert!(pit.out0());
        // Writing a new count drops OUT until the new terminal count.
        pit.write(0x40, 10);
        assert!(!pit.out0());
        pit.write(0x40, 0);
        assert_eq!(pit.advance(10 * SEC + tick_ns(100)), 1);
    }

    #[test]
    fn next_irq0_is_exact() {
        for (mode, count) in [(2, 11932), (3, 11932), (2, 3), (3, 7), (0, 65535), (4, 9)] {
            let mut pit = Pit::new();
            pit.advance(12_345);
            program(&mut pit, 0, mode, count);
            let mut edges = 0;
            for _ in 0..5 {
                let Some(next) = pit.next_irq0_ns() else {
                    break;
                };
                assert_eq!(pit.advance(next - 1), 0, "mode {mode} count {count}");
                assert_eq!(pit.advance(next), 1, "mode {mode} count {count}");
                edges += 1;
            }
            let expected = if matches!(mode, 0 | 4) { 1 } else { 5 };
            assert_eq!(edges, expected, "mode {mode}");
        }
    }

    /// Counts rising edges by sampling OUT more often than every clock.
    fn sampled_edges(pit: &mut Pit, until_tick: u64) -> (u64, u64) {
        let (mut sampled, mut reported) = (0, 0);
        let mut out = pit.out0();
        for t in (pit.now_ns + 1..=tick_ns(until_tick)).step_by(97) {
            reported += pit.advance(t);
            let now = pit.out0();
            sampled += u64::from(now && !out);
            out = now;
        }
        (sampled, reported)
    }

    #[test]
    fn edges_match_out_samples_across_reloads() {
        for mode in [0, 2, 3, 4] {
            for (first, second) in [(2, 3), (5, 4), (6, 9), (1, 2), (7, 1)] {
                let mut pit = Pit::new();
                program(&mut pit, 0, mode, first);
                let (s1, r1) = sampled_edges(&mut pit, 13);
                // A count written mid-period (2/3 wait for the period end).
                program_count_only(&mut pit, second);
                let (s2, r2) = sampled_edges(&mut pit, 60);
                assert_eq!((r1, r2), (s1, s2), "mode {mode} counts {first},{second}");
            }
        }
    }

    fn program_count_only(pit: &mut Pit, count: u16) {
        let [lo, hi] = count.to_le_bytes();
        pit.write(0x40, lo);
        pit.write(0x40, hi);
    }

    #[test]
    fn mode2_new_count_waits_for_period_end() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100);
        pit.advance(tick_ns(30));
        program_count_only(&mut pit, 10);
        // The old period runs out: reload at tick 101, then every 10.
        assert_eq!(pit.next_irq0_ns(), Some(tick_ns(101)));
        assert_eq!(latch_and_read(&mut pit, 0), 71);
        pit.advance(tick_ns(101));
        assert_eq!(latch_and_read(&mut pit, 0), 10);
        assert_eq!(pit.next_irq0_ns(), Some(tick_ns(111)));
    }

    #[test]
    fn count_rewritten_before_loading_replaces_it() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100);
        program_count_only(&mut pit, 10);
        assert_eq!(pit.next_irq0_ns(), Some(tick_ns(11)));
        pit.advance(tick_ns(1));
        assert_eq!(latch_and_read(&mut pit, 0), 10);
    }

    #[test]
    fn read_back_status_and_count() {
        let mut pit = Pit::new();
        pit.write(0x43, 0x36); // channel 0, lo/hi, mode 3
        // Status: OUT high, null count (no count yet), RW=11, mode 3.
        pit.write(0x43, 0xe2);
        assert_eq!(pit.read(0x40), 0xc0 | 0x36);
        pit.write(0x40, 0x00);
        pit.write(0x40, 0x10);
        pit.advance(tick_ns(1));
        // Latch count and status of channels 0 and 2.
        pit.write(0x43, 0xc0 | 0x08 | 0x02);
        pit.advance(tick_ns(500));
        assert_eq!(pit.read(0x40), 0x80 | 0x36, "status first, count loaded");
        assert_eq!(pit.read(0x40), 0x00);
        assert_eq!(pit.read(0x40), 0x10);
        // Channel 2: power-on state, lo/hi mode 2, OUT high, null count.
        assert_eq!(pit.read(0x42), 0x80 | 0x40 | 0x34);
        // Count-only read-back: no status byte. Mode 3 counts by two.
        let base = pit.now_ns;
        program(&mut pit, 0, 3, 0x1000);
        pit.advance(base + tick_ns(2));
        pit.write(0x43, 0xd2);
        assert_eq!(pit.read(0x40), 0xfe);
        assert_eq!(pit.read(0x40), 0x0f);
        // BCD is recorded in the status byte.
        pit.write(0x43, 0x5b); // channel 1, lo only, mode 5, BCD
        pit.write(0x43, 0xe4);
        assert_eq!(pit.read(0x41), 0xc0 | 0x1b);
    }

    #[test]
    fn lo_only_and_hi_only_access() {
        let mut pit = Pit::new();
        pit.write(0x43, 0x10); // channel 0, lo only, mode 0
        pit.write(0x40, 200);
        assert_eq!(pit.next_irq0_ns(), Some(tick_ns(201)));
        pit.advance(tick_ns(51));
        assert_eq!(pit.read(0x40), 150);
        assert_eq!(pit.read(0x40), 150, "no flip-flop in lo-only access");
        pit.write(0x43, 0x24); // hi only, mode 2
        pit.write(0x40, 0x02);
        pit.advance(tick_ns(51 + 3));
        assert_eq!(pit.read(0x40), 0x01, "0x200 - 2 = 0x1fe");
        assert_eq!(pit.read(0x40), 0x01);
    }

    #[test]
    fn control_word_stops_counting() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100);
        pit.advance(tick_ns(50));
        pit.write(0x43, 0x34);
        assert_eq!(pit.next_irq0_ns(), None);
        assert_eq!(pit.advance(SEC), 0);
        assert!(pit.out0());
    }

    #[test]
    fn mode4_strobe() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 4, 10);
        assert!(pit.out0());
        pit.advance(tick_ns(11));
        assert!(!pit.out0(), "low for the clock at terminal count");
        assert_eq!(pit.advance(tick_ns(12)), 1);
        assert!(pit.out0());
        assert_eq!(pit.advance(SEC), 0);
    }

    #[test]
    fn port_61_gate_and_out2() {
        let mut pit = Pit::new();
        // Linux's PIT calibration: gate on, speaker off, channel 2 mode 0.
        pit.write(0x61, 0x01);
        assert_eq!(pit.read(0x61) & 0x03, 0x01);
        program(&mut pit, 2, 0, 1000);
        pit.advance(tick_ns(1000));
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, 0);
        pit.advance(tick_ns(1001));
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, PORT_B_OUT2);
        assert_eq!(pit.advance(SEC), 0, "channel 2 does not drive IRQ0");

        // Gate low holds a mode 0 count; high resumes it.
        let base = pit.now_ns;
        program(&mut pit, 2, 0, 1000);
        pit.advance(base + tick_ns(500));
        pit.write(0x61, 0x02);
        let held = latch_and_read(&mut pit, 2);
        assert_eq!(held, 1000 - 499);
        pit.advance(base + tick_ns(5000));
        assert_eq!(latch_and_read(&mut pit, 2), held);
        assert_eq!(pit.read(0x61) & (PORT_B_OUT2 | 0x03), 0x02);
        let base = pit.now_ns;
        pit.write(0x61, 0x01);
        pit.advance(base + tick_ns(500));
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, 0, "needs {held} more clocks");
        pit.advance(base + tick_ns(501));
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, PORT_B_OUT2);

        // Mode 1 needs a gate rising edge to start its one-shot.
        program(&mut pit, 2, 1, 10);
        pit.advance(base + SEC);
        assert_ne!(pit.read(0x61) & PORT_B_OUT2, 0, "untriggered: high");
        let base = pit.now_ns;
        pit.write(0x61, 0x00);
        pit.write(0x61, 0x01);
        pit.advance(base + tick_ns(1));
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, 0, "one-shot running");
        pit.advance(base + tick_ns(10));
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, 0);
        pit.advance(base + tick_ns(11));
        assert_ne!(pit.read(0x61) & PORT_B_OUT2, 0);

        // Mode 2/3: gate low forces OUT high and stops; high reloads.
        program(&mut pit, 2, 2, 4);
        let base = pit.now_ns;
        pit.advance(base + tick_ns(4));
        assert_eq!(pit.read(0x61) & PORT_B_OUT2, 0, "count 1: OUT low");
        pit.write(0x61, 0x00);
        assert_ne!(pit.read(0x61) & PORT_B_OUT2, 0);
        pit.write(0x61, 0x01);
        let base = pit.now_ns;
        pit.advance(base + tick_ns(2));
        assert_eq!(latch_and_read(&mut pit, 2), 3, "reloaded at the gate edge");
    }

    #[test]
    fn refresh_bit_toggles_on_every_read() {
        let mut pit = Pit::new();
        let a = pit.read(0x61) & PORT_B_REFRESH;
        let b = pit.read(0x61) & PORT_B_REFRESH;
        let c = pit.read(0x61) & PORT_B_REFRESH;
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn time_never_goes_back() {
        let mut pit = Pit::new();
        program(&mut pit, 0, 2, 100);
        let edges = pit.advance(SEC);
        assert_eq!(pit.advance(SEC / 2), 0);
        assert_eq!(pit.advance(SEC), 0);
        let later = pit.advance(2 * SEC);
        assert!(edges.abs_diff(later) <= 1);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::state::through_bytes;

    const MS: u64 = 1_000_000;

    /// Mid-operation: channel 0 in mode 2 with a count latched but unread
    /// and a new count waiting for the end of its period; channel 2 in
    /// mode 0 with half of its count written and the gate low.
    fn busy() -> Pit {
        let mut pit = Pit::new();
        pit.write(0x43, 0x34);
        pit.write(0x40, 0x9c);
        pit.write(0x40, 0x2e); // 11932: 100 Hz
        pit.advance(3 * MS + 123);
        pit.write(0x43, 0x00); // latch channel 0
        let _ = pit.read(0x40); // low byte read, high byte still latched
        pit.write(0x40, 0x00);
        pit.write(0x40, 0x10); // 4096, pending until the period ends
        pit.write(0x43, 0xb0);
        pit.write(0x42, 0x34); // low byte only
        pit.advance(4 * MS);
        assert!(matches!(
            pit.channels[0].counter,
            Counter::Running { next: Some(_), .. }
        ));
        assert!(pit.channels[0].latched_count.is_some());
        assert!(pit.channels[2].write_msb_next);
        pit
    }

    /// Both PITs see the same guest and time from here on, and agree.
    fn run_alike(a: &mut Pit, b: &mut Pit) {
        let mut now = a.now_ns;
        for step in 0..60u64 {
            now += 437_123 * (step % 7 + 1);
            assert_eq!(a.advance(now), b.advance(now));
            assert_eq!(a.next_irq0_ns(), b.next_irq0_ns());
            for port in [0x40, 0x42, 0x61] {
                assert_eq!(a.read(port), b.read(port));
            }
            if step == 20 {
                for pit in [&mut *a, &mut *b] {
                    pit.write(0x42, 0x12);
                    pit.write(0x61, 0x01); // channel 2's gate up
                    pit.write(0x43, 0xc2); // read-back of channel 0
                }
            }
            assert_eq!(a.state(), b.state());
        }
    }

    #[test]
    fn a_restored_pit_goes_on_as_the_original() {
        let mut original = busy();
        let state = through_bytes(&original.state());
        let mut restored = Pit::from_state(&state).unwrap();
        assert_eq!(restored, original);
        run_alike(&mut original, &mut restored);
    }

    #[test]
    fn a_pit_state_no_guest_reaches_is_refused() {
        let good = busy().state();
        fn running(state: &mut PitState) -> (&mut Clock, &mut Segment, &mut Segment) {
            match &mut state.channels[0].counter {
                Counter::Running { clock, seg, next } => (clock, seg, next.as_mut().unwrap()),
                Counter::Stopped { .. } => unreachable!("busy() counts on channel 0"),
            }
        }
        let mut zero_count = good.clone();
        running(&mut zero_count).1.count = 0;
        let mut ahead = good.clone();
        running(&mut ahead).0.since_ns = good.now_ns + 1;
        let mut due = good.clone();
        running(&mut due).2.load_tick = 1;
        let mut huge = good.clone();
        running(&mut huge).2.load_tick = u64::MAX;
        let mut gate = good.clone();
        gate.channels[1].gate = false;
        let mut register = good.clone();
        register.channels[2].count_reg = Some(0x1_0001);
        for (state, what) in [
            (zero_count, "count or load tick"),
            (ahead, "ahead of"),
            (due, "already due"),
            (huge, "count or load tick"),
            (gate, "low gate"),
            (register, "count register"),
        ] {
            let error = Pit::from_state(&state).unwrap_err();
            assert!(error.to_string().contains(what), "{error}");
        }
    }
}
