//! Simulated chips of the display group, on GPIO lines 60-99 (see the bus
//! assignments in mod.rs). Each decodes what the MCU bit-bangs from the
//! writes it sees, as the real chip would, and answers `chip NAME ...`:
//!
//! - `hd44780`: an HD44780 on RS=gpio60, E=gpio61, D4-D7=gpio62-65. It
//!   powers up in 8-bit mode and latches a nibble (with RS) on each
//!   falling edge of E; a function set switches it to 4-bit mode, where
//!   nibbles pair into bytes. `chip hd44780 log` lists every transfer as
//!   `cXX@CLOCK` (command) or `dXX@CLOCK` (data), the clock being that of
//!   the latching edge; `chip hd44780 ddram ADDR COUNT` shows display RAM
//!   (hex); `chip hd44780 reset` powers it up again.
//! - `st7920`: an ST7920 on its serial interface, CS=gpio66, SCLK=gpio67,
//!   SID=gpio68: SID is sampled on rising SCLK edges while CS is high;
//!   five ones synchronise (then RW, RS, 0), and each byte arrives as two
//!   bytes carrying its high and low nibbles. `chip st7920 log` as above.
//! - `tmcuart0` (single wire, gpio70) and `tmcuart1` (the driver's input
//!   on gpio71, its output on gpio72): a TMC2209-like driver at UART
//!   address 0. It measures the bit time from the sync nibble's edges,
//!   decodes each frame (start bit, 8 data bits LSB first, stop bit)
//!   from the times of the line's writes, checks the CRC, applies
//!   register writes (counting IFCNT) and answers register reads 8 bit
//!   times after the request with a reply datagram (sync 0x05, address
//!   0xFF, register, value MSB first, CRC), driven as the levels the MCU
//!   reads. The reply starts half a bit before the first sample the MCU
//!   takes once it is due, so that sample, and each taken a bit time
//!   later, lands mid-bit. `chip tmcuartN log` lists the datagrams seen
//!   (hex, `!` after a bad one); `chip tmcuartN reg R` and `chip tmcuartN
//!   set R VALUE` read and write registers (numbers decimal or 0x-hex).
//! - `neopixel`: WS2812 LEDs on gpio80: high pulses of 640 ns or more are
//!   ones, shorter ones zeros; 50 us low latches. `chip neopixel frame`
//!   shows the last latched data (hex).

use std::collections::VecDeque;

use crate::clock::Clock;
use crate::hw::sim::{SimGpioDevice, SimState};

/// Transfers kept in a chip's log (the oldest go first).
const LOG_MAX: usize = 4096;

/// Add this group's chips to the simulated board.
pub fn attach(s: &mut SimState) {
    s.gpio_devices
        .push(Box::new(Hd44780Sim::new(60, 61, [62, 63, 64, 65])));
    s.gpio_devices.push(Box::new(St7920Sim::new(66, 67, 68)));
    s.gpio_devices
        .push(Box::new(TmcSim::new("tmcuart0", 70, 70, 0)));
    s.gpio_devices
        .push(Box::new(TmcSim::new("tmcuart1", 71, 72, 0)));
    s.gpio_devices.push(Box::new(NeopixelSim::new(80)));
}

fn push_log(log: &mut VecDeque<String>, entry: String) {
    if log.len() >= LOG_MAX {
        log.pop_front();
    }
    log.push_back(entry);
}

fn join(log: &VecDeque<String>) -> String {
    log.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------
// HD44780

struct Hd44780Sim {
    rs: u32,
    e: u32,
    d: [u32; 4],
    four_bit: bool,
    /// The first nibble of a byte in 4-bit mode, with its RS.
    half: Option<(bool, u8)>,
    ddram: [u8; 128],
    cgram: [u8; 64],
    addr: u8,
    to_cgram: bool,
    log: VecDeque<String>,
}

impl Hd44780Sim {
    fn new(rs: u32, e: u32, d: [u32; 4]) -> Hd44780Sim {
        Hd44780Sim {
            rs,
            e,
            d,
            four_bit: false,
            half: None,
            ddram: [b' '; 128],
            cgram: [0; 64],
            addr: 0,
            to_cgram: false,
            log: VecDeque::new(),
        }
    }

    fn transfer(&mut self, clock: u32, rs: bool, b: u8) {
        push_log(
            &mut self.log,
            format!("{}{b:02x}@{clock}", if rs { 'd' } else { 'c' }),
        );
        if rs {
            if self.to_cgram {
                self.cgram[(self.addr & 0x3f) as usize] = b;
            } else {
                self.ddram[(self.addr & 0x7f) as usize] = b;
            }
            self.addr = self.addr.wrapping_add(1);
            return;
        }
        if b & 0x80 != 0 {
            self.addr = b & 0x7f;
            self.to_cgram = false;
        } else if b & 0x40 != 0 {
            self.addr = b & 0x3f;
            self.to_cgram = true;
        } else if b & 0x20 != 0 {
            // Function set: DL picks the interface width.
            self.four_bit = b & 0x10 == 0;
            self.half = None;
        } else if b == 0x01 {
            self.ddram = [b' '; 128];
            self.addr = 0;
            self.to_cgram = false;
        } else if b & 0xfe == 0x02 {
            self.addr = 0;
            self.to_cgram = false;
        }
    }
}

impl SimGpioDevice for Hd44780Sim {
    fn on_write(&mut self, clock: u32, pin: u32, value: bool, levels: &mut [bool]) {
        if pin != self.e || value || !levels[pin as usize] {
            return;
        }
        // Falling edge of E: latch.
        let rs = levels[self.rs as usize];
        let nibble = self
            .d
            .iter()
            .enumerate()
            .fold(0u8, |n, (k, &p)| n | (levels[p as usize] as u8) << k);
        if !self.four_bit {
            self.transfer(clock, rs, nibble << 4);
            return;
        }
        match self.half.take() {
            None => self.half = Some((rs, nibble)),
            Some((rs0, hi)) => self.transfer(clock, rs0, hi << 4 | nibble),
        }
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        match words {
            ["hd44780", "log"] => Some(join(&self.log)),
            ["hd44780", "reset"] => {
                *self = Hd44780Sim::new(self.rs, self.e, self.d);
                Some("ok".into())
            }
            ["hd44780", "ddram", a, n] => match (parse_num(a), parse_num(n)) {
                (Some(a), Some(n)) => {
                    let a = (a as usize).min(128);
                    Some(hex(&self.ddram[a..(a + n as usize).min(128)]))
                }
                _ => Some("error usage: chip hd44780 ddram ADDR COUNT".into()),
            },
            ["hd44780", ..] => Some("error usage: chip hd44780 log|reset|ddram ADDR COUNT".into()),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------
// ST7920

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St7920State {
    /// Waiting for five ones.
    Idle,
    /// Reading RW, RS and a zero after the five ones.
    Sync,
    /// Reading the halves of bytes.
    Data,
}

struct St7920Sim {
    cs: u32,
    sclk: u32,
    sid: u32,
    ones: u8,
    state: St7920State,
    bits: u8,
    shift: u8,
    rs: bool,
    high: Option<u8>,
    log: VecDeque<String>,
}

impl St7920Sim {
    fn new(cs: u32, sclk: u32, sid: u32) -> St7920Sim {
        St7920Sim {
            cs,
            sclk,
            sid,
            ones: 0,
            state: St7920State::Idle,
            bits: 0,
            shift: 0,
            rs: false,
            high: None,
            log: VecDeque::new(),
        }
    }

    fn bit(&mut self, clock: u32, bit: bool) {
        self.ones = if bit { self.ones + 1 } else { 0 };
        if self.ones == 5 {
            self.state = St7920State::Sync;
            self.bits = 0;
            self.shift = 0;
            self.ones = 0;
            return;
        }
        self.shift = self.shift << 1 | bit as u8;
        self.bits += 1;
        match self.state {
            St7920State::Idle => self.bits = 0,
            St7920State::Sync if self.bits == 3 => {
                // RW, RS, 0.
                self.rs = self.shift & 0x2 != 0;
                self.state = St7920State::Data;
                self.bits = 0;
                self.shift = 0;
                self.high = None;
            }
            St7920State::Data if self.bits == 8 => {
                let b = self.shift;
                self.bits = 0;
                self.shift = 0;
                match self.high.take() {
                    None => self.high = Some(b & 0xf0),
                    Some(h) => push_log(
                        &mut self.log,
                        format!(
                            "{}{:02x}@{clock}",
                            if self.rs { 'd' } else { 'c' },
                            h | b >> 4
                        ),
                    ),
                }
            }
            _ => {}
        }
    }
}

impl SimGpioDevice for St7920Sim {
    fn on_write(&mut self, clock: u32, pin: u32, value: bool, levels: &mut [bool]) {
        if pin == self.cs && !value {
            self.state = St7920State::Idle;
            self.ones = 0;
        }
        if pin != self.sclk || !value || levels[pin as usize] || !levels[self.cs as usize] {
            return;
        }
        let bit = levels[self.sid as usize];
        self.bit(clock, bit);
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        match words {
            ["st7920", "log"] => Some(join(&self.log)),
            ["st7920", ..] => Some("error usage: chip st7920 log".into()),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------
// TMC UART

/// CRC-8 as Trinamic's datasheets (and klippy's tmc_uart.py) compute it.
pub fn tmc_crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in data {
        let mut b = b;
        for _ in 0..8 {
            if (crc >> 7) ^ (b & 1) != 0 {
                crc = (crc << 1) ^ 0x07;
            } else {
                crc <<= 1;
            }
            b >>= 1;
        }
    }
    crc
}

const TMC_IFCNT: usize = 0x02;
const TMC_IOIN: usize = 0x06;
/// Reply bits: 8 frames of 10.
const REPLY_BITS: u32 = 80;
/// The driver's reply delay (SENDDELAY), in bit times.
const SEND_DELAY_BITS: u32 = 8;

struct Reply {
    bits: u128,
    /// When the reply may start (the driver's send delay has passed).
    ready: u32,
    /// When its start bit began, once the MCU has seen it.
    start: Option<u32>,
    bit_time: u32,
}

struct TmcSim {
    name: &'static str,
    /// The driver's input (the MCU's tx) and output (the MCU's rx).
    din: u32,
    dout: u32,
    addr: u8,
    regs: [u32; 128],
    /// The last level written to `din`, and whether that write is still
    /// under way (its edge is timed as it returns).
    line: bool,
    edge_pending: bool,
    rx: UartRx,
    reply: Option<Reply>,
    log: VecDeque<String>,
    clock: Clock,
}

/// A UART receiver fed with the times of a line's level changes. It
/// samples as it goes (each call costs only the new edges and samples,
/// so it never slows the MCU's writes down): the bit time comes from the
/// sync nibble's first five edges; each frame starts at a falling edge
/// and is sampled mid-bit.
struct UartRx {
    /// Level changes of the current datagram, oldest first.
    edges: Vec<(u32, bool)>,
    bit: u32,
    /// Index of the last edge at or before the last sample, and where
    /// the search for the next start bit stands.
    level_idx: usize,
    scan: usize,
    search_from: u32,
    /// The frame being read: its start, the next bit, the bits so far.
    frame: Option<(u32, u32, u8)>,
    bytes: Vec<u8>,
    /// When the last complete frame's stop bit ended.
    end: u32,
}

/// What [`UartRx::pump`] found.
enum RxEvent {
    None,
    /// A complete datagram (bytes, end of its last stop bit).
    Datagram,
    /// A framing error or a line gone quiet mid-datagram.
    Garbled,
}

impl UartRx {
    fn new() -> UartRx {
        UartRx {
            edges: Vec::with_capacity(256),
            bit: 0,
            level_idx: 0,
            scan: 0,
            search_from: 0,
            frame: None,
            bytes: Vec::with_capacity(16),
            end: 0,
        }
    }

    fn reset(&mut self) {
        self.edges.clear();
        self.bit = 0;
        self.level_idx = 0;
        self.scan = 0;
        self.frame = None;
        self.bytes.clear();
    }

    fn edge(&mut self, clock: u32, value: bool) {
        if self.edges.is_empty() {
            if value {
                // The line returning to idle outside a datagram.
                return;
            }
            self.search_from = clock;
        }
        if self.edges.len() < self.edges.capacity() {
            self.edges.push((clock, value));
        }
    }

    /// Take every sample due before `until`.
    fn pump(&mut self, until: u32) -> RxEvent {
        use crate::clock::is_before;
        if self.edges.is_empty() {
            return RxEvent::None;
        }
        if self.bit == 0 {
            let e = &self.edges;
            let n = e.len();
            if n >= 5 {
                // The sync nibble: five edges a bit time apart.
                let b = (e[4].0.wrapping_sub(e[0].0) / 4).max(1);
                let even = e[..5].windows(2).all(|w| {
                    let g = w[1].0.wrapping_sub(w[0].0);
                    g >= b - b / 4 && g <= b + b / 4
                });
                if !even {
                    return RxEvent::Garbled;
                }
                self.bit = b;
            } else {
                // Still in the sync nibble: it must not pause.
                let quiet = until.wrapping_sub(e[n - 1].0);
                let limit = match n {
                    1 => 50_000,
                    _ => 8 * (e[n - 1].0.wrapping_sub(e[0].0) / (n as u32 - 1)),
                };
                return if quiet > limit {
                    RxEvent::Garbled
                } else {
                    RxEvent::None
                };
            }
        }
        let b = self.bit;
        loop {
            let Some((s, k, acc)) = self.frame else {
                // Look for the next start bit.
                while self.scan < self.edges.len() {
                    let (c, v) = self.edges[self.scan];
                    if !v && !is_before(c, self.search_from) {
                        break;
                    }
                    self.scan += 1;
                }
                if self.scan == self.edges.len() {
                    // No frame has that long an idle: the datagram broke
                    // off (the next falling edge starts a new one).
                    let last = self.edges[self.edges.len() - 1].0;
                    if until.wrapping_sub(last) > 12 * b {
                        return RxEvent::Garbled;
                    }
                    return RxEvent::None;
                }
                self.frame = Some((self.edges[self.scan].0, 0, 0));
                self.level_idx = self.scan;
                self.scan += 1;
                continue;
            };
            let p = s.wrapping_add(b + k * b + b / 2);
            if !is_before(p, until) {
                return RxEvent::None;
            }
            while self.level_idx + 1 < self.edges.len()
                && !is_before(p, self.edges[self.level_idx + 1].0)
            {
                self.level_idx += 1;
            }
            let level = self.edges[self.level_idx].1;
            if k < 8 {
                self.frame = Some((s, k + 1, acc | (level as u8) << k));
                continue;
            }
            // The stop bit.
            if !level {
                return RxEvent::Garbled;
            }
            self.bytes.push(acc);
            self.frame = None;
            self.search_from = p;
            self.end = s.wrapping_add(10 * b);
            let want = match self.bytes.get(2) {
                Some(r) if r & 0x80 != 0 => 8,
                Some(_) => 4,
                None => 0,
            };
            if self.bytes.len() == want {
                return RxEvent::Datagram;
            }
            if self.bytes.len() >= 8 {
                return RxEvent::Garbled;
            }
        }
    }
}

impl TmcSim {
    fn new(name: &'static str, din: u32, dout: u32, addr: u8) -> TmcSim {
        let mut regs = [0u32; 128];
        // IOIN: version 0x21 (TMC2209).
        regs[TMC_IOIN] = 0x21 << 24;
        TmcSim {
            name,
            din,
            dout,
            addr,
            regs,
            line: true,
            edge_pending: false,
            rx: UartRx::new(),
            reply: None,
            log: VecDeque::new(),
            clock: Clock::new(),
        }
    }

    /// Receive up to `now`; act on a datagram received.
    fn pump(&mut self, now: u32) {
        match self.rx.pump(now) {
            RxEvent::None => {}
            RxEvent::Garbled => {
                push_log(&mut self.log, format!("{}!", hex(&self.rx.bytes)));
                self.rx.reset();
            }
            RxEvent::Datagram => {
                let (end, b) = (self.rx.end, self.rx.bit);
                let bytes = std::mem::take(&mut self.rx.bytes);
                self.datagram(&bytes, end, b);
                self.rx.bytes = bytes;
                self.rx.reset();
            }
        }
    }

    fn datagram(&mut self, bytes: &[u8], end: u32, b: u32) {
        let n = bytes.len();
        let ok = bytes[0] & 0x0f == 0x05 && tmc_crc8(&bytes[..n - 1]) == bytes[n - 1];
        push_log(
            &mut self.log,
            format!("{}{}", hex(bytes), if ok { "" } else { "!" }),
        );
        if !ok || bytes[1] != self.addr {
            return;
        }
        let reg = (bytes[2] & 0x7f) as usize;
        if n == 8 {
            self.regs[reg] = u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]);
            self.regs[TMC_IFCNT] = (self.regs[TMC_IFCNT] + 1) & 0xff;
            return;
        }
        let v = self.regs[reg].to_be_bytes();
        let mut msg = [0x05, 0xff, reg as u8, v[0], v[1], v[2], v[3], 0];
        msg[7] = tmc_crc8(&msg[..7]);
        let mut bits = 0u128;
        for (k, &m) in msg.iter().enumerate() {
            bits |= ((m as u128) << 1 | 0x200) << (10 * k);
        }
        self.reply = Some(Reply {
            bits,
            ready: end.wrapping_add(SEND_DELAY_BITS * b),
            start: None,
            bit_time: b,
        });
    }

    /// The level the driver drives at `now`.
    fn output(&mut self, now: u32) -> bool {
        let Some(r) = self.reply.as_mut() else {
            return true;
        };
        let start = match r.start {
            Some(s) => s,
            None if crate::clock::is_before(now, r.ready) => return true,
            None => {
                let s = now.wrapping_sub(r.bit_time / 2);
                r.start = Some(s);
                s
            }
        };
        let idx = now.wrapping_sub(start) / r.bit_time.max(1);
        if idx >= REPLY_BITS {
            self.reply = None;
            return true;
        }
        r.bits >> idx & 1 != 0
    }
}

impl SimGpioDevice for TmcSim {
    fn on_write(&mut self, clock: u32, pin: u32, value: bool, _levels: &mut [bool]) {
        if pin != self.din || value == self.line {
            return;
        }
        // Samples before this edge first: they may end a datagram. Taken
        // here, before the write's end is read, so that this work (on
        // cold caches after an idle spell: microseconds) delays the edge
        // as the driver sees it as much as it delays the MCU's reading
        // after the write, which the baud correction uses. Timed after
        // it, the driver answered at another baud rate than the MCU read.
        self.pump(clock);
        self.line = value;
        self.edge_pending = true;
    }

    fn after_write(&mut self, clock: u32) {
        if std::mem::take(&mut self.edge_pending) {
            self.rx.edge(clock, self.line);
        }
    }

    fn on_read(&mut self, clock: u32, pin: u32, levels: &mut [bool]) {
        if pin != self.dout {
            return;
        }
        self.pump(clock);
        levels[pin as usize] = self.output(clock);
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        if words.first() != Some(&self.name) {
            return None;
        }
        self.pump(self.clock.now());
        Some(match &words[1..] {
            ["log"] => join(&self.log),
            ["reg", r] => match parse_num(r) {
                Some(r) if r < 128 => format!("{:#010x}", self.regs[r as usize]),
                _ => "error no such register".into(),
            },
            ["set", r, v] => match (parse_num(r), parse_num(v)) {
                (Some(r), Some(v)) if r < 128 => {
                    self.regs[r as usize] = v;
                    "ok".into()
                }
                _ => "error usage: set REG VALUE".into(),
            },
            _ => format!("error usage: chip {} log|reg REG|set REG VALUE", self.name),
        })
    }
}

// ---------------------------------------------------------------------
// Neopixel

/// High pulses at least this long are ones.
const NEOPIXEL_ONE_TICKS: u32 = 32;
/// A low time this long latches.
const NEOPIXEL_RESET_TICKS: u32 = 2500;

struct NeopixelSim {
    pin: u32,
    rise: u32,
    fall: Option<u32>,
    /// The bits of the transfer in progress, and of the last latched one.
    bits: Vec<bool>,
    latched: Vec<bool>,
    frames: u32,
    clock: Clock,
}

const NEOPIXEL_MAX_BITS: usize = 8 * 4096;

impl NeopixelSim {
    fn new(pin: u32) -> NeopixelSim {
        NeopixelSim {
            pin,
            rise: 0,
            fall: None,
            bits: Vec::with_capacity(NEOPIXEL_MAX_BITS),
            latched: Vec::with_capacity(NEOPIXEL_MAX_BITS),
            frames: 0,
            clock: Clock::new(),
        }
    }

    /// Latch the bits received if the line has been low long enough
    /// (cheap: it runs inside the MCU's writes).
    fn latch_if_due(&mut self, now: u32) {
        let Some(f) = self.fall else { return };
        if self.bits.is_empty() || now.wrapping_sub(f) < NEOPIXEL_RESET_TICKS {
            return;
        }
        std::mem::swap(&mut self.bits, &mut self.latched);
        self.bits.clear();
        self.frames += 1;
    }

    fn frame(&self) -> Vec<u8> {
        self.latched
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |b, &x| b << 1 | x as u8) << (8 - c.len()))
            .collect()
    }
}

impl SimGpioDevice for NeopixelSim {
    fn on_write(&mut self, clock: u32, pin: u32, value: bool, levels: &mut [bool]) {
        if pin != self.pin || value == levels[pin as usize] {
            return;
        }
        if value {
            self.latch_if_due(clock);
            self.rise = clock;
        } else {
            if self.bits.len() < NEOPIXEL_MAX_BITS {
                self.bits
                    .push(clock.wrapping_sub(self.rise) >= NEOPIXEL_ONE_TICKS);
            }
            self.fall = Some(clock);
        }
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        match words {
            ["neopixel", "frame"] => {
                self.latch_if_due(self.clock.now());
                Some(format!("{} frames={}", hex(&self.frame()), self.frames))
            }
            ["neopixel", ..] => Some("error usage: chip neopixel frame".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc8_matches_klippy() {
        // Values from klippy's tmc_uart.py _calc_crc8.
        assert_eq!(tmc_crc8(&[0xf5, 0x00, 0x06]), 0x28);
        assert_eq!(tmc_crc8(&[0x05, 0xff, 0x06, 0x21, 0, 0, 0]), 0x41);
        assert_eq!(tmc_crc8(&[0xf5, 0x00, 0x90, 0, 7, 0x17, 3]), 0xc2);
    }

    /// The UART frames of `msg`: start bit, 8 data bits LSB first, stop
    /// bit.
    fn uart_bits(msg: &[u8]) -> Vec<bool> {
        let mut bits = Vec::new();
        for &m in msg {
            bits.push(false);
            bits.extend((0..8).map(|k| m >> k & 1 != 0));
            bits.push(true);
        }
        bits
    }

    /// `msg` and its CRC: a datagram.
    fn datagram(msg: &[u8]) -> Vec<u8> {
        let mut d = msg.to_vec();
        d.push(tmc_crc8(msg));
        d
    }

    /// The MCU's edges for `msg` sent from `t0`, `b` ticks a bit.
    fn uart_edges(msg: &[u8], t0: u32, b: u32) -> Vec<(u32, bool)> {
        let bits = uart_bits(msg);
        let mut level = true;
        let mut out = Vec::new();
        for (n, &v) in bits.iter().enumerate() {
            if v != level {
                out.push((t0 + n as u32 * b, v));
                level = v;
            }
        }
        out
    }

    /// A write of the driver's input as the board makes it: the edge,
    /// then the write's end at the same time.
    fn tmc_write(t: &mut TmcSim, clock: u32, pin: u32, v: bool, levels: &mut [bool]) {
        t.on_write(clock, pin, v, levels);
        t.after_write(clock);
    }

    /// The bit time of the TMC tests, in ticks.
    const B: u32 = 1250;

    /// The TMC tests' start: a driver on lines 1 (input) and 2 (output),
    /// the lines' levels (idle high) and a datagram writing 0x00071703
    /// to register 0x10.
    fn tmc_setup() -> (TmcSim, Vec<bool>, Vec<u8>) {
        let t = TmcSim::new("t", 1, 2, 0);
        (t, vec![true; 4], datagram(&[0xf5, 0, 0x90, 0, 7, 0x17, 3]))
    }

    #[test]
    fn tmc_answers_a_read_and_takes_a_write() {
        let b = B;
        let (mut t, mut levels, w) = tmc_setup();
        for (c, v) in uart_edges(&w, 1000, b) {
            tmc_write(&mut t, c, 1, v, &mut levels);
        }
        let r = datagram(&[0xf5, 0, 0x10]);
        let t0 = 1000 + 100 * b;
        for (c, v) in uart_edges(&r, t0, b) {
            tmc_write(&mut t, c, 1, v, &mut levels);
        }
        assert_eq!(join(&t.log), hex(&w));
        // The MCU samples from 4 bit times after the request.
        let mut got = Vec::new();
        let mut c = t0 + 40 * b + 4 * b + 7;
        let mut synced = false;
        for _ in 0..200 {
            t.on_read(c, 2, &mut levels);
            let v = levels[2];
            if synced || (!v && c > t0 + 44 * b + b) {
                synced = true;
                got.push(v);
            }
            if got.len() == 80 {
                break;
            }
            c += b;
        }
        assert_eq!(join(&t.log), format!("{} {}", hex(&w), hex(&r)));
        let reply = datagram(&[0x05, 0xff, 0x10, 0, 7, 0x17, 3]);
        assert_eq!(got, uart_bits(&reply));
    }

    #[test]
    fn tmc_resyncs_after_a_broken_datagram() {
        let b = B;
        let (mut t, mut levels, w) = tmc_setup();
        // The first try breaks off after 30 bits.
        for (c, v) in uart_edges(&w, 1000, b)
            .into_iter()
            .filter(|e| e.0 < 1000 + 30 * b)
        {
            tmc_write(&mut t, c, 1, v, &mut levels);
        }
        if !t.line {
            tmc_write(&mut t, 1000 + 30 * b, 1, true, &mut levels);
        }
        for (c, v) in uart_edges(&w, 1000 + 45 * b, b) {
            tmc_write(&mut t, c, 1, v, &mut levels);
        }
        t.pump(1000 + 200 * b);
        assert_eq!(join(&t.log), format!("f50090! {}", hex(&w)));
        assert_eq!(t.regs[0x10], 0x0007_1703);
    }

    #[test]
    fn hd44780_four_bit_init() {
        let mut h = Hd44780Sim::new(0, 1, [2, 3, 4, 5]);
        let mut levels = vec![false; 8];
        let mut nib = |h: &mut Hd44780Sim, rs: bool, n: u8| {
            levels[0] = rs;
            for k in 0..4 {
                levels[2 + k] = n >> k & 1 != 0;
            }
            levels[1] = true;
            h.on_write(0, 1, false, &mut levels);
            levels[1] = false;
        };
        for n in [3, 3, 3, 3, 3, 2, 2, 8, 4, 1] {
            nib(&mut h, n == 4 || n == 1, n);
        }
        assert_eq!(
            join(&h.log),
            "c30@0 c30@0 c30@0 c30@0 c30@0 c20@0 c28@0 d41@0"
        );
        assert_eq!(h.ddram[0], 0x41);
    }
}
