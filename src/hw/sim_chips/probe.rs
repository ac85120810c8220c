//! Simulated chips of the probe group (see the bus assignments in mod.rs):
//! - an HX711 load-cell ADC on GPIO lines 56 (DOUT) and 57 (SCLK):
//!   `chip hx71x load COUNTS`, `chip hx71x ramp STEP` (added per
//!   conversion), `chip hx71x rate SPS`, `chip hx71x glitch` (the next
//!   read's gain pulses see DOUT low: a desync), `chip hx71x status`;
//! - an LDC1612 on i2c.1 0x2a with INTB on line 59: `chip ldc1612 raw N`
//!   (28-bit reading), `chip ldc1612 errbits N` (the top 4 data bits),
//!   `chip ldc1612 rate HZ`, `chip ldc1612 nack 0|1`, `chip ldc1612 status`;
//! - an ADS1220 on spidev3.0 with DRDY on line 58: `chip ads1220 load N`,
//!   `chip ads1220 status`;
//! - an ADS131M0x (ADS131M02 by default) on spidev3.1 with DRDY on line
//!   50: its full-duplex SPI frames (a response word, one word per
//!   channel and a CRC-16/CCITT word), the NULL/RESET/STANDBY/WAKEUP
//!   commands and RREG/WREG, converting at the rate its CLOCK and CFG
//!   registers and `clkin` give: `chip ads131m0x load N`, `ramp STEP`
//!   (added per conversion), `channels 2|4` (the model), `clkin HZ`,
//!   `crcerr N` (the next N frames carry a bad CRC), `powercycle` (an
//!   unexpected reset: registers to defaults, STATUS.RESET set),
//!   `status`.
//!
//! Each converts at its rate while running and keeps the latest
//! conversion, as the chips do; a conversion not read before the next is
//! counted as missed (`status`).

use std::cell::RefCell;
use std::rc::Rc;

use klipper_protocol::crc::crc16_ccitt;

use super::{request_to, set};
use crate::hw::bus::{I2C_NACK, I2C_SUCCESS};
use crate::hw::sim::{SimGpioDevice, SimI2cDevice, SimSpiDevice, SimState};

pub const HX_DOUT: u32 = 56;
pub const HX_SCLK: u32 = 57;
pub const ADS1220_DRDY: u32 = 58;
pub const LDC_INTB: u32 = 59;
pub const ADS1220_BUS: u32 = 3 * 256;
pub const ADS131_DRDY: u32 = 50;
pub const ADS131_BUS: u32 = 3 * 256 + 1;
pub const LDC_BUS: u32 = 1;
pub const LDC_ADDR: u8 = 0x2a;

const TICKS_PER_SEC: u64 = 50_000_000;
/// An HX711 powers down when SCLK stays high this long (60 us).
const HX_POWER_DOWN_TICKS: u64 = 3000;

/// A 64-bit clock built from the 32-bit one the callbacks see.
#[derive(Default)]
struct Clock64 {
    last: u32,
    now: u64,
    started: bool,
}

impl Clock64 {
    fn update(&mut self, clock: u32) -> u64 {
        if self.started {
            self.now += clock.wrapping_sub(self.last) as u64;
        } else {
            self.started = true;
        }
        self.last = clock;
        self.now
    }
}

/// Conversions at a fixed rate from `epoch`; `consumed` is the index of
/// the last one read.
#[derive(Default)]
struct Converter {
    running: bool,
    epoch: u64,
    period: u64,
    consumed: u64,
    reads: u64,
    missed: u64,
}

impl Converter {
    fn start(&mut self, now: u64, sps: u32) {
        self.start_period(now, TICKS_PER_SEC / sps.max(1) as u64);
    }
    fn start_period(&mut self, now: u64, period: u64) {
        self.running = true;
        self.epoch = now;
        self.period = period.max(1);
        self.consumed = 0;
    }
    fn index(&self, now: u64) -> u64 {
        if !self.running {
            return 0;
        }
        (now - self.epoch) / self.period
    }
    /// The 64-bit time of `clock` (through `clk`), if converting.
    fn running_at(&self, clk: &mut Clock64, clock: u32) -> Option<u64> {
        self.running.then(|| clk.update(clock))
    }
    fn ready(&self, now: u64) -> bool {
        self.running && self.index(now) > self.consumed
    }
    /// Take the newest conversion; its index.
    fn consume(&mut self, now: u64) -> u64 {
        let n = self.index(now);
        self.missed += n.saturating_sub(self.consumed + 1);
        self.consumed = n;
        self.reads += 1;
        n
    }
}

/// A load-cell bridge's reading: `load` counts plus `ramp` a conversion
/// (`chip NAME load COUNTS`, `chip NAME ramp STEP`).
#[derive(Default)]
struct Load {
    load: i32,
    ramp: i32,
}

impl Load {
    /// Conversion `n`, clamped to 24 bits.
    fn sample(&self, n: u64) -> i32 {
        (self.load as i64 + self.ramp as i64 * n as i64).clamp(-0x80_0000, 0x7f_ffff) as i32
    }

    /// A `load N` or `ramp N` request to chip `name` (`rest` as the
    /// chip's match saw it).
    fn control(&mut self, name: &str, rest: &[&str]) -> String {
        let (field, usage) = match rest.first() {
            Some(&"ramp") => (&mut self.ramp, "ramp STEP"),
            _ => (&mut self.load, "load COUNTS"),
        };
        // Wider numbers wrap, as they always have here.
        let n = rest.get(1).and_then(|n| n.parse::<i64>().ok());
        set(field, n.map(|n| n as i32), &format!("{name} {usage}"))
    }
}

// ---------------------------------------------------------------------------
// HX711

struct Hx711 {
    clk: Clock64,
    conv: Converter,
    active: bool,
    sps: u32,
    load: Load,
    sclk: bool,
    sclk_high_since: u64,
    powered_down: bool,
    /// A read in progress: the value, the pulses clocked so far and
    /// whether its gain pulses are glitched.
    shift: Option<(u32, u32, bool)>,
    glitch: bool,
    last_gain_pulses: u32,
}

impl Hx711 {
    fn new() -> Hx711 {
        Hx711 {
            clk: Clock64::default(),
            conv: Converter::default(),
            active: false,
            sps: 80,
            load: Load::default(),
            sclk: false,
            sclk_high_since: 0,
            powered_down: true,
            shift: None,
            glitch: false,
            last_gain_pulses: 0,
        }
    }

    fn check_power(&mut self, now: u64) {
        if self.sclk && now - self.sclk_high_since > HX_POWER_DOWN_TICKS {
            self.powered_down = true;
            self.conv.running = false;
            self.shift = None;
        }
    }

    fn sample(&self, n: u64) -> u32 {
        (self.load.sample(n) as u32) & 0xff_ffff
    }
}

impl SimGpioDevice for Hx711 {
    fn on_write(&mut self, clock: u32, pin: u32, value: bool, levels: &mut [bool]) {
        if pin != HX_SCLK {
            return;
        }
        self.active = true;
        let now = self.clk.update(clock);
        self.check_power(now);
        if value && !self.sclk {
            self.sclk_high_since = now;
            if self.shift.is_none() && self.conv.ready(now) {
                let n = self.conv.consume(now);
                let glitch = std::mem::take(&mut self.glitch);
                self.shift = Some((self.sample(n), 0, glitch));
            }
            if let Some((v, k, glitch)) = self.shift.as_mut() {
                // A glitch: the first gain pulse sees DOUT low.
                levels[HX_DOUT as usize] = if *k < 24 {
                    (*v >> (23 - *k)) & 1 != 0
                } else {
                    !(*glitch && *k == 24)
                };
                *k += 1;
            }
        } else if !value && self.sclk && self.powered_down {
            // Waking up: conversions start over.
            self.powered_down = false;
            self.conv.start(now, self.sps);
        }
        self.sclk = value;
    }

    fn on_read(&mut self, clock: u32, pin: u32, levels: &mut [bool]) {
        if pin != HX_DOUT || !self.active {
            return;
        }
        let now = self.clk.update(clock);
        self.check_power(now);
        let ready = self.conv.ready(now);
        match self.shift {
            Some((_, k, g)) if k <= 24 || (g && k == 25) => {}
            Some((_, k, _)) => {
                if ready {
                    self.shift = None;
                    self.last_gain_pulses = k - 24;
                    levels[pin as usize] = false;
                } else {
                    levels[pin as usize] = true;
                }
            }
            None => levels[pin as usize] = !ready,
        }
    }

    fn control(&mut self, w: &[&str]) -> Option<String> {
        let rest = request_to("hx71x", w)?;
        Some(match rest {
            ["load" | "ramp", _] => self.load.control("hx71x", rest),
            ["rate", n] => set(
                &mut self.sps,
                n.parse::<i64>().ok().filter(|&n| n > 0).map(|n| n as u32),
                "hx71x rate SPS",
            ),
            ["glitch"] => {
                self.glitch = true;
                "ok".into()
            }
            ["status"] => format!(
                "reads={} missed={} gain_pulses={} powered={}",
                self.conv.reads, self.conv.missed, self.last_gain_pulses, !self.powered_down as u8
            ),
            _ => "error usage: hx71x load|ramp|rate|glitch|status".into(),
        })
    }
}

// ---------------------------------------------------------------------------
// LDC1612

struct Ldc1612 {
    clk: Clock64,
    conv: Converter,
    regs: [u16; 128],
    ptr: u8,
    rate: u32,
    raw: u32,
    errbits: u32,
    nack: bool,
    /// STATUS was read since the last conversion (INTB released).
    status_seen: u64,
    /// The data register pair is latched when the MSB is read.
    lsb_latch: u16,
}

const LDC_CONFIG: usize = 0x1a;
const LDC_SLEEP: u16 = 1 << 13;

impl Ldc1612 {
    fn new() -> Ldc1612 {
        let mut regs = [0u16; 128];
        regs[LDC_CONFIG] = 0x2801;
        regs[0x7e] = 0x5449;
        regs[0x7f] = 0x3055;
        Ldc1612 {
            clk: Clock64::default(),
            conv: Converter::default(),
            regs,
            ptr: 0,
            rate: 250,
            raw: 0x0200_0000,
            errbits: 0,
            nack: false,
            status_seen: u64::MAX,
            lsb_latch: 0,
        }
    }

    fn unread(&self, now: u64) -> bool {
        self.conv.ready(now)
    }

    fn read_reg(&mut self, now: u64, reg: u8) -> u16 {
        match reg {
            0x00 => {
                let n = if self.unread(now) {
                    self.conv.consume(now)
                } else {
                    self.conv.consumed
                };
                let _ = n;
                let v = (self.errbits << 28) | (self.raw & 0x0fff_ffff);
                self.lsb_latch = v as u16;
                (v >> 16) as u16
            }
            0x01 => self.lsb_latch,
            0x18 => {
                self.status_seen = self.conv.index(now);
                if self.unread(now) {
                    1 << 3
                } else {
                    0
                }
            }
            r => self.regs[(r & 0x7f) as usize],
        }
    }

    fn write_reg(&mut self, now: u64, reg: u8, v: u16) {
        if reg as usize == LDC_CONFIG {
            let sleeping = self.regs[LDC_CONFIG] & LDC_SLEEP != 0;
            if v & LDC_SLEEP != 0 {
                self.conv.running = false;
            } else if sleeping || !self.conv.running {
                self.conv.start(now, self.rate);
            }
        }
        if reg < 0x7e {
            self.regs[reg as usize] = v;
        }
    }
}

impl SimI2cDevice for Ldc1612 {
    fn write(&mut self, clock: u32, data: &[u8]) -> u8 {
        if self.nack {
            return I2C_NACK;
        }
        let now = self.clk.update(clock);
        if let Some((&reg, rest)) = data.split_first() {
            self.ptr = reg;
            if rest.len() >= 2 {
                self.write_reg(now, reg, u16::from_be_bytes([rest[0], rest[1]]));
            }
        }
        I2C_SUCCESS
    }

    fn read(&mut self, clock: u32, reg: &[u8], out: &mut [u8]) -> u8 {
        if self.nack {
            return I2C_NACK;
        }
        let now = self.clk.update(clock);
        if let Some(&r) = reg.first() {
            self.ptr = r;
        }
        for pair in out.chunks_mut(2) {
            let v = self.read_reg(now, self.ptr).to_be_bytes();
            pair.copy_from_slice(&v[..pair.len()]);
            self.ptr = self.ptr.wrapping_add(1);
        }
        I2C_SUCCESS
    }

    fn control(&mut self, w: &[&str]) -> Option<String> {
        let rest = request_to("ldc1612", w)?;
        let num = |s: &str| s.parse::<u32>().ok();
        Some(match rest {
            ["raw", n] => set(
                &mut self.raw,
                num(n).map(|n| n & 0x0fff_ffff),
                "ldc1612 raw N",
            ),
            ["errbits", n] => set(
                &mut self.errbits,
                num(n).map(|n| n & 0xf),
                "ldc1612 errbits N",
            ),
            ["rate", n] => set(&mut self.rate, num(n).filter(|&n| n > 0), "ldc1612 rate HZ"),
            ["nack", v] => {
                self.nack = *v == "1";
                "ok".into()
            }
            ["status"] => format!(
                "reads={} missed={} running={}",
                self.conv.reads, self.conv.missed, self.conv.running as u8
            ),
            _ => "error usage: ldc1612 raw|errbits|rate|nack|status".into(),
        })
    }
}

/// The LDC1612's INTB line: low while a conversion is unread and STATUS
/// has not been read since it completed.
impl DataReady for Ldc1612 {
    const PIN: u32 = LDC_INTB;
    fn asserted(&mut self, clock: u32) -> Option<bool> {
        let now = self.conv.running_at(&mut self.clk, clock)?;
        let idx = self.conv.index(now);
        Some(self.unread(now) && self.status_seen != idx)
    }
}

/// A chip the board holds twice, on its bus (through this) and by a
/// data-ready line.
struct Shared<T>(Rc<RefCell<T>>);

impl<T: SimI2cDevice> SimI2cDevice for Shared<T> {
    fn write(&mut self, clock: u32, data: &[u8]) -> u8 {
        self.0.borrow_mut().write(clock, data)
    }
    fn read(&mut self, clock: u32, reg: &[u8], out: &mut [u8]) -> u8 {
        self.0.borrow_mut().read(clock, reg, out)
    }
    fn control(&mut self, w: &[&str]) -> Option<String> {
        self.0.borrow_mut().control(w)
    }
}

/// A chip's data-ready line on the simulated board (active low).
trait DataReady {
    const PIN: u32;
    /// Whether the line is asserted at `clock` (None: left as it is).
    fn asserted(&mut self, clock: u32) -> Option<bool>;
}

impl<T: DataReady> SimGpioDevice for Shared<T> {
    fn on_write(&mut self, _clock: u32, _pin: u32, _value: bool, _levels: &mut [bool]) {}
    fn on_read(&mut self, clock: u32, pin: u32, levels: &mut [bool]) {
        if pin != T::PIN {
            return;
        }
        if let Some(asserted) = self.0.borrow_mut().asserted(clock) {
            levels[pin as usize] = !asserted;
        }
    }
}

impl<T: SimSpiDevice> SimSpiDevice for Shared<T> {
    fn transfer(&mut self, clock: u32, data: &mut [u8]) {
        self.0.borrow_mut().transfer(clock, data)
    }
    fn control(&mut self, w: &[&str]) -> Option<String> {
        self.0.borrow_mut().control(w)
    }
}

// ---------------------------------------------------------------------------
// ADS1220

struct Ads1220 {
    clk: Clock64,
    conv: Converter,
    regs: [u8; 4],
    load: i32,
}

impl Ads1220 {
    fn sps(&self) -> u32 {
        const NORMAL: [u32; 8] = [20, 45, 90, 175, 330, 600, 1000, 1000];
        let dr = (self.regs[1] >> 5) as usize;
        let turbo = (self.regs[1] >> 3) & 3 == 2;
        NORMAL[dr] * if turbo { 2 } else { 1 }
    }
}

impl SimSpiDevice for Ads1220 {
    fn transfer(&mut self, clock: u32, data: &mut [u8]) {
        let now = self.clk.update(clock);
        let cmd = data.first().copied().unwrap_or(0);
        match cmd {
            0x06 => {
                self.regs = [0; 4];
                self.conv.running = false;
            }
            0x08 => self.conv.start(now, self.sps()),
            0x02 => self.conv.running = false,
            c if c & 0xf0 == 0x40 => {
                let r = ((c >> 2) & 3) as usize;
                let n = (c & 3) as usize + 1;
                for k in 0..n.min(data.len() - 1) {
                    if r + k < 4 {
                        self.regs[r + k] = data[1 + k];
                    }
                }
                data.fill(0xff);
            }
            c if c & 0xf0 == 0x20 => {
                let r = ((c >> 2) & 3) as usize;
                data[0] = 0xff;
                for (k, d) in data.iter_mut().enumerate().skip(1) {
                    *d = self.regs.get(r + k - 1).copied().unwrap_or(0);
                }
            }
            _ => {
                // Continuous mode: data is clocked out with any bytes.
                if self.conv.running {
                    self.conv.consume(now);
                }
                let v = (self.load.clamp(-0x80_0000, 0x7f_ffff) as u32).to_be_bytes();
                for (k, d) in data.iter_mut().enumerate() {
                    *d = v.get(k + 1).copied().unwrap_or(0);
                }
            }
        }
    }

    fn control(&mut self, w: &[&str]) -> Option<String> {
        let rest = request_to("ads1220", w)?;
        Some(match rest {
            ["load", n] => match n.parse::<i32>() {
                Ok(n) => {
                    self.load = n;
                    "ok".into()
                }
                Err(_) => "error usage: ads1220 load COUNTS".into(),
            },
            ["status"] => format!(
                "reads={} missed={} running={} sps={}",
                self.conv.reads,
                self.conv.missed,
                self.conv.running as u8,
                self.sps()
            ),
            _ => "error usage: ads1220 load|status".into(),
        })
    }
}

/// DRDY: low while a conversion is unread (left alone when stopped).
impl DataReady for Ads1220 {
    const PIN: u32 = ADS1220_DRDY;
    fn asserted(&mut self, clock: u32) -> Option<bool> {
        let now = self.conv.running_at(&mut self.clk, clock)?;
        Some(self.conv.ready(now))
    }
}

// ---------------------------------------------------------------------------
// ADS131M0x

const A131_RESET: u16 = 0x0011;
const A131_STANDBY: u16 = 0x0022;
const A131_WAKEUP: u16 = 0x0033;
const A131_LOCK: u16 = 0x0555;
const A131_UNLOCK: u16 = 0x0655;
const A131_ID: usize = 0x00;
const A131_STATUS: usize = 0x01;
const A131_MODE: usize = 0x02;
const A131_CLOCK: usize = 0x03;
const A131_CFG: usize = 0x06;
/// MODE (and STATUS) bit 10: the chip was reset.
const A131_RESET_BIT: u16 = 1 << 10;
/// STATUS bit 15: the register map is locked.
const A131_LOCK_BIT: u16 = 1 << 15;

/// The word to send in the next frame's first slot.
#[derive(Clone, Copy)]
enum A131Response {
    /// The STATUS register, as latched when the frame starts (NULL).
    Status,
    Word(u16),
    /// RREG of `count` registers from `addr`: one value, or an
    /// acknowledgement word followed by the values.
    Regs(usize, usize),
}

struct Ads131m0x {
    clk: Clock64,
    conv: Converter,
    /// Conversions started once the chip first sees a clock (power-up).
    powered: bool,
    standby: bool,
    locked: bool,
    channels: usize,
    clkin: u32,
    regs: [u16; 64],
    response: A131Response,
    /// The conversion results shifted out (until a newer one is read).
    latest: i32,
    load: Load,
    bad_crc: u32,
    frames: u64,
    resets: u64,
}

impl Ads131m0x {
    fn new(channels: usize) -> Ads131m0x {
        let mut a = Ads131m0x {
            clk: Clock64::default(),
            conv: Converter::default(),
            powered: false,
            standby: false,
            locked: false,
            channels,
            clkin: 8_192_000,
            regs: [0; 64],
            response: A131Response::Status,
            latest: 0,
            load: Load::default(),
            bad_crc: 0,
            frames: 0,
            resets: 0,
        };
        a.reset_registers();
        a
    }

    /// Registers at their reset values (datasheet defaults), STATUS.RESET
    /// set; the next response is the reset acknowledgement.
    fn reset_registers(&mut self) {
        let ch = self.channels;
        self.regs = [0; 64];
        self.regs[A131_ID] = (0x20 | ch as u16) << 8;
        self.regs[A131_MODE] = 0x0510;
        self.regs[A131_CLOCK] = (((1u16 << ch) - 1) << 8) | 0x0e;
        self.regs[A131_CFG] = 0x0600;
        for k in 0..ch {
            // CHn_CFG, OCAL_MSB, OCAL_LSB, GCAL_MSB, GCAL_LSB from 0x09.
            self.regs[0x09 + 5 * k + 3] = 0x8000;
        }
        self.locked = false;
        self.standby = false;
        self.response = A131Response::Word(0xff20 | ch as u16);
    }

    /// The conversion period in MCU ticks: f_DATA = f_CLKIN / (2 OSR),
    /// or f_CLKIN / (2 (GC_DLY + 3 OSR)) with global chop.
    fn period(&self) -> u64 {
        let clock = self.regs[A131_CLOCK];
        let osr: u64 = if clock & (1 << 5) != 0 {
            64
        } else {
            128 << ((clock >> 2) & 7)
        };
        let cfg = self.regs[A131_CFG];
        let mod_periods = if cfg & (1 << 8) != 0 {
            (2u64 << ((cfg >> 9) & 0xf)) + 3 * osr
        } else {
            osr
        };
        TICKS_PER_SEC * 2 * mod_periods / self.clkin.max(1) as u64
    }

    fn sps(&self) -> f64 {
        TICKS_PER_SEC as f64 / self.period() as f64
    }

    fn restart(&mut self, now: u64) {
        self.powered = true;
        if self.standby {
            self.conv.running = false;
        } else {
            let p = self.period();
            self.conv.start_period(now, p);
        }
    }

    fn power_up(&mut self, clock: u32) -> u64 {
        let now = self.clk.update(clock);
        if !self.powered {
            self.restart(now);
        }
        now
    }

    fn status(&self, now: u64) -> u16 {
        let mode = self.regs[A131_MODE];
        let mut s = mode & (A131_RESET_BIT | 0x0b00); // RESET, CRC_TYPE, WLENGTH
        if self.locked {
            s |= A131_LOCK_BIT;
        }
        if self.conv.ready(now) {
            s |= (self.regs[A131_CLOCK] >> 8) & ((1 << self.channels) - 1);
        }
        s
    }

    fn word_len(&self) -> usize {
        match (self.regs[A131_MODE] >> 8) & 3 {
            0 => 2,
            1 => 3,
            _ => 4,
        }
    }

    /// A 16-bit value (response, register, CRC) as one word: MSB aligned.
    fn put16(&self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_be_bytes());
        out.resize(out.len() + self.word_len() - 2, 0);
    }

    /// A 24-bit conversion result as one word.
    fn put24(&self, out: &mut Vec<u8>, v: i32) {
        let b = v.to_be_bytes();
        match (self.regs[A131_MODE] >> 8) & 3 {
            0 => out.extend_from_slice(&b[1..3]),
            1 => out.extend_from_slice(&b[1..4]),
            2 => out.extend_from_slice(&[b[1], b[2], b[3], 0]),
            _ => out.extend_from_slice(&[if v < 0 { 0xff } else { 0 }, b[1], b[2], b[3]]),
        }
    }

    fn write_regs(&mut self, now: u64, addr: usize, words: &[u16]) {
        let mut restart = false;
        for (k, &v) in words.iter().enumerate() {
            let r = addr + k;
            if r <= A131_STATUS || r >= self.regs.len() {
                continue; // ID and STATUS are read-only
            }
            self.regs[r] = v;
            restart |= r == A131_CLOCK || r == A131_CFG;
        }
        if restart {
            // New OSR or chop settings: the digital filter starts over.
            self.restart(now);
        }
    }

    fn command(&mut self, now: u64, cmd: u16, words: &[u16]) {
        let addr = ((cmd >> 7) & 0x3f) as usize;
        let n = (cmd & 0x7f) as usize + 1;
        self.response = match cmd {
            0x0000 => A131Response::Status,
            A131_RESET => {
                self.resets += 1;
                self.reset_registers();
                self.restart(now);
                return;
            }
            A131_STANDBY => {
                self.standby = true;
                self.conv.running = false;
                A131Response::Word(cmd)
            }
            A131_WAKEUP => {
                self.standby = false;
                self.restart(now);
                A131Response::Word(cmd)
            }
            A131_LOCK | A131_UNLOCK => {
                self.locked = cmd == A131_LOCK;
                A131Response::Word(cmd)
            }
            c if c & 0xe000 == 0xa000 => A131Response::Regs(addr, n),
            c if c & 0xe000 == 0x6000 && !self.locked => {
                let data = &words[..n.min(words.len())];
                self.write_regs(now, addr, data);
                let m = data.len().max(1) as u16 - 1;
                A131Response::Word(0x4000 | (addr as u16) << 7 | m)
            }
            // Not a command (or a write to a locked map): STATUS.
            _ => A131Response::Status,
        };
    }

    fn reg(&self, now: u64, r: usize) -> u16 {
        match r {
            A131_STATUS => self.status(now),
            r => self.regs.get(r).copied().unwrap_or(0),
        }
    }
}

impl SimSpiDevice for Ads131m0x {
    fn transfer(&mut self, clock: u32, data: &mut [u8]) {
        let now = self.power_up(clock);
        self.frames += 1;
        let w = self.word_len();
        // The frame out: the response to the previous frame's command,
        // then the channels, then the CRC of all that.
        let mut out = Vec::with_capacity((self.channels + 2) * w);
        let ready = self.conv.ready(now);
        let mut extra = Vec::new();
        match self.response {
            A131Response::Status => self.put16(&mut out, self.status(now)),
            A131Response::Word(v) => self.put16(&mut out, v),
            A131Response::Regs(a, 1) => self.put16(&mut out, self.reg(now, a)),
            A131Response::Regs(a, n) => {
                self.put16(&mut out, 0xe000 | (a as u16) << 7 | (n as u16 - 1));
                extra = (a..a + n).map(|r| self.reg(now, r)).collect();
            }
        }
        if ready {
            let n = self.conv.consume(now);
            self.latest = self.load.sample(n);
        }
        if extra.is_empty() {
            let enabled = self.regs[A131_CLOCK] >> 8;
            for k in 0..self.channels {
                let v = if enabled & (1 << k) != 0 {
                    self.latest
                } else {
                    0
                };
                self.put24(&mut out, v);
            }
        } else {
            for v in extra {
                self.put16(&mut out, v);
            }
        }
        let mut crc = crc16_ccitt(&out);
        if self.bad_crc > 0 {
            self.bad_crc -= 1;
            crc ^= 0x5a5a;
        }
        self.put16(&mut out, crc);
        // The frame in: a command word and its data words (16 bits each,
        // MSB aligned); a shorter transfer just ends the frame early.
        let words: Vec<u16> = data
            .chunks(w)
            .filter(|c| c.len() >= 2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        if let Some((&cmd, rest)) = words.split_first() {
            self.command(now, cmd, rest);
        }
        for (k, d) in data.iter_mut().enumerate() {
            *d = out.get(k).copied().unwrap_or(0);
        }
    }

    fn control(&mut self, w: &[&str]) -> Option<String> {
        let rest = request_to("ads131m0x", w)?;
        let num = |s: &str| s.parse::<i64>().ok();
        Some(match rest {
            ["load" | "ramp", _] => self.load.control("ads131m0x", rest),
            ["clkin", n] => set(&mut self.clkin, num(n).filter(|&n| n > 0).map(|n| n as u32), "ads131m0x clkin HZ"),
            ["channels", n] => match num(n) {
                Some(n @ (2 | 4)) => {
                    self.channels = n as usize;
                    self.reset_registers();
                    self.powered = false;
                    "ok".into()
                }
                _ => "error usage: ads131m0x channels 2|4".into(),
            },
            ["crcerr", n] => match num(n) {
                Some(n) if n >= 0 => {
                    self.bad_crc = n as u32;
                    "ok".into()
                }
                _ => "error usage: ads131m0x crcerr FRAMES".into(),
            },
            ["powercycle"] => {
                self.reset_registers();
                self.response = A131Response::Status;
                self.powered = false;
                "ok".into()
            }
            ["status"] => format!(
                "reads={} missed={} running={} sps={:.1} frames={} resets={} mode={:04x} clock={:04x}",
                self.conv.reads,
                self.conv.missed,
                self.conv.running as u8,
                self.sps(),
                self.frames,
                self.resets,
                self.regs[A131_MODE],
                self.regs[A131_CLOCK]
            ),
            _ => "error usage: ads131m0x load|ramp|clkin|channels|crcerr|powercycle|status"
                .into(),
        })
    }
}

/// DRDY: low while a conversion is unread (high in standby).
impl DataReady for Ads131m0x {
    const PIN: u32 = ADS131_DRDY;
    fn asserted(&mut self, clock: u32) -> Option<bool> {
        let now = self.power_up(clock);
        Some(self.conv.ready(now))
    }
}

/// Add this group's chips to the simulated board.
pub fn attach(s: &mut SimState) {
    s.gpio_devices.push(Box::new(Hx711::new()));
    let ldc = Rc::new(RefCell::new(Ldc1612::new()));
    s.i2c_devices
        .push((LDC_BUS, LDC_ADDR, Box::new(Shared(ldc.clone()))));
    s.gpio_devices.push(Box::new(Shared(ldc)));
    let ads = Rc::new(RefCell::new(Ads1220 {
        clk: Clock64::default(),
        conv: Converter::default(),
        regs: [0; 4],
        load: 0,
    }));
    s.spi_devices
        .push((ADS1220_BUS, Box::new(Shared(ads.clone()))));
    s.gpio_devices.push(Box::new(Shared(ads)));
    let a131 = Rc::new(RefCell::new(Ads131m0x::new(2)));
    s.spi_devices
        .push((ADS131_BUS, Box::new(Shared(a131.clone()))));
    s.gpio_devices.push(Box::new(Shared(a131)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hx711_clocks_out_the_load_when_ready() {
        let mut h = Hx711::new();
        h.load.load = -1234;
        let mut lv = vec![false; 128];
        let mut t = 1000u32;
        h.on_write(t, HX_SCLK, true, &mut lv);
        t += 10_000;
        h.on_write(t, HX_SCLK, false, &mut lv); // wake
        h.on_read(t, HX_DOUT, &mut lv);
        assert!(lv[HX_DOUT as usize], "not ready at once");
        t += 50_000_000 / 80 + 10;
        h.on_read(t, HX_DOUT, &mut lv);
        assert!(!lv[HX_DOUT as usize], "ready after one period");
        let mut v = 0u32;
        for _ in 0..25 {
            h.on_write(t, HX_SCLK, true, &mut lv);
            h.on_write(t, HX_SCLK, false, &mut lv);
            h.on_read(t, HX_DOUT, &mut lv);
            v = (v << 1) | lv[HX_DOUT as usize] as u32;
        }
        assert_eq!(v & 1, 1, "gain pulse sees DOUT high");
        assert_eq!(((v >> 1) << 8) as i32 >> 8, -1234);
        assert_eq!(h.conv.reads, 1);
    }

    #[test]
    fn ads131m0x_crc_is_ccitt_false() {
        assert_eq!(crc16_ccitt(b"123456789"), 0x29b1);
    }

    /// One frame of 16-bit words, 24-bit slots, at least four words.
    fn frame(words: &[u16]) -> Vec<u8> {
        let mut v: Vec<u8> = words
            .iter()
            .flat_map(|w| [(w >> 8) as u8, *w as u8, 0])
            .collect();
        v.resize(v.len().max(12), 0);
        v
    }

    #[test]
    fn ads131m0x_answers_a_frame_late_and_converts_at_its_rate() {
        let mut a = Ads131m0x::new(2);
        a.load.load = -2;
        let t = 1000u32;
        let mut f = frame(&[0xa000]); // RREG ID
        a.transfer(t, &mut f);
        // Power-up: the first response is the reset acknowledgement.
        assert_eq!(&f[..2], &[0xff, 0x22]);
        assert_eq!(crc16_ccitt(&f[..9]).to_be_bytes(), [f[9], f[10]]);
        let mut f = frame(&[0]);
        a.transfer(t, &mut f);
        assert_eq!(&f[..2], &[0x22, 0x00], "ID: an ADS131M02");
        // WREG CLOCK: channel 1 only, OSR 16384: 250 SPS at 8.192 MHz.
        let mut f = frame(&[0x6000 | 3 << 7, 0x021e]);
        a.transfer(t, &mut f);
        let mut f = frame(&[0]);
        a.transfer(t, &mut f);
        assert_eq!(&f[..2], &[0x41, 0x80], "WREG acknowledgement");
        assert_eq!(a.period(), 200_000);
        let mut f = frame(&[0]);
        a.transfer(t + 200_001, &mut f);
        assert_eq!(&f[..2], &[0x05, 0x02], "STATUS: RESET, 24-bit, DRDY1");
        assert_eq!(&f[3..9], &[0, 0, 0, 0xff, 0xff, 0xfe]);
    }
}
