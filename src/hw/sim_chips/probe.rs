//! Simulated chips of the probe group (see the bus assignments in mod.rs):
//! - an HX711 load-cell ADC on GPIO lines 56 (DOUT) and 57 (SCLK):
//!   `chip hx71x load COUNTS`, `chip hx71x ramp STEP` (added per
//!   conversion), `chip hx71x rate SPS`, `chip hx71x glitch` (the next
//!   read's gain pulses see DOUT low: a desync), `chip hx71x status`;
//! - an LDC1612 on i2c.1 0x2a with INTB on line 59: `chip ldc1612 raw N`
//!   (28-bit reading), `chip ldc1612 errbits N` (the top 4 data bits),
//!   `chip ldc1612 rate HZ`, `chip ldc1612 nack 0|1`, `chip ldc1612 status`;
//! - an ADS1220 on spidev3.0 with DRDY on line 58: `chip ads1220 load N`,
//!   `chip ads1220 status`.
//!
//! Each converts at its rate while running and keeps the latest
//! conversion, as the chips do; a conversion not read before the next is
//! counted as missed (`status`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::hw::bus::{I2C_NACK, I2C_SUCCESS};
use crate::hw::sim::{SimGpioDevice, SimI2cDevice, SimSpiDevice, SimState};

pub const HX_DOUT: u32 = 56;
pub const HX_SCLK: u32 = 57;
pub const ADS1220_DRDY: u32 = 58;
pub const LDC_INTB: u32 = 59;
pub const ADS1220_BUS: u32 = 3 * 256;
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
        self.running = true;
        self.epoch = now;
        self.period = TICKS_PER_SEC / sps.max(1) as u64;
        self.consumed = 0;
    }
    fn index(&self, now: u64) -> u64 {
        if !self.running {
            return 0;
        }
        (now - self.epoch) / self.period
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

// ---------------------------------------------------------------------------
// HX711

struct Hx711 {
    clk: Clock64,
    conv: Converter,
    active: bool,
    sps: u32,
    load: i32,
    ramp: i32,
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
            load: 0,
            ramp: 0,
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
        let v = (self.load as i64 + self.ramp as i64 * n as i64).clamp(-0x80_0000, 0x7f_ffff);
        (v as u32) & 0xff_ffff
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
        let ["hx71x", rest @ ..] = w else {
            return None;
        };
        let num = |s: &str| s.parse::<i64>().ok();
        Some(match rest {
            ["load", n] => match num(n) {
                Some(n) => {
                    self.load = n as i32;
                    "ok".into()
                }
                None => "error usage: hx71x load COUNTS".into(),
            },
            ["ramp", n] => match num(n) {
                Some(n) => {
                    self.ramp = n as i32;
                    "ok".into()
                }
                None => "error usage: hx71x ramp STEP".into(),
            },
            ["rate", n] => match num(n) {
                Some(n) if n > 0 => {
                    self.sps = n as u32;
                    "ok".into()
                }
                _ => "error usage: hx71x rate SPS".into(),
            },
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
        let ["ldc1612", rest @ ..] = w else {
            return None;
        };
        let num = |s: &str| s.parse::<u32>().ok();
        Some(match rest {
            ["raw", n] => match num(n) {
                Some(n) => {
                    self.raw = n & 0x0fff_ffff;
                    "ok".into()
                }
                None => "error usage: ldc1612 raw N".into(),
            },
            ["errbits", n] => match num(n) {
                Some(n) => {
                    self.errbits = n & 0xf;
                    "ok".into()
                }
                None => "error usage: ldc1612 errbits N".into(),
            },
            ["rate", n] => match num(n) {
                Some(n) if n > 0 => {
                    self.rate = n;
                    "ok".into()
                }
                _ => "error usage: ldc1612 rate HZ".into(),
            },
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
struct LdcIntb(Rc<RefCell<Ldc1612>>);

impl SimGpioDevice for LdcIntb {
    fn on_write(&mut self, _clock: u32, _pin: u32, _value: bool, _levels: &mut [bool]) {}
    fn on_read(&mut self, clock: u32, pin: u32, levels: &mut [bool]) {
        if pin != LDC_INTB {
            return;
        }
        let mut l = self.0.borrow_mut();
        if !l.conv.running {
            return;
        }
        let now = l.clk.update(clock);
        let idx = l.conv.index(now);
        let asserted = l.unread(now) && l.status_seen != idx;
        levels[pin as usize] = !asserted;
    }
}

struct LdcI2c(Rc<RefCell<Ldc1612>>);

impl SimI2cDevice for LdcI2c {
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
        let ["ads1220", rest @ ..] = w else {
            return None;
        };
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

struct AdsSpi(Rc<RefCell<Ads1220>>);

impl SimSpiDevice for AdsSpi {
    fn transfer(&mut self, clock: u32, data: &mut [u8]) {
        self.0.borrow_mut().transfer(clock, data)
    }
    fn control(&mut self, w: &[&str]) -> Option<String> {
        self.0.borrow_mut().control(w)
    }
}

struct AdsDrdy(Rc<RefCell<Ads1220>>);

impl SimGpioDevice for AdsDrdy {
    fn on_write(&mut self, _clock: u32, _pin: u32, _value: bool, _levels: &mut [bool]) {}
    fn on_read(&mut self, clock: u32, pin: u32, levels: &mut [bool]) {
        if pin != ADS1220_DRDY {
            return;
        }
        let mut a = self.0.borrow_mut();
        if !a.conv.running {
            return;
        }
        let now = a.clk.update(clock);
        levels[pin as usize] = !a.conv.ready(now);
    }
}

/// Add this group's chips to the simulated board.
pub fn attach(s: &mut SimState) {
    s.gpio_devices.push(Box::new(Hx711::new()));
    let ldc = Rc::new(RefCell::new(Ldc1612::new()));
    s.i2c_devices
        .push((LDC_BUS, LDC_ADDR, Box::new(LdcI2c(ldc.clone()))));
    s.gpio_devices.push(Box::new(LdcIntb(ldc)));
    let ads = Rc::new(RefCell::new(Ads1220 {
        clk: Clock64::default(),
        conv: Converter::default(),
        regs: [0; 4],
        load: 0,
    }));
    s.spi_devices
        .push((ADS1220_BUS, Box::new(AdsSpi(ads.clone()))));
    s.gpio_devices.push(Box::new(AdsDrdy(ads)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hx711_clocks_out_the_load_when_ready() {
        let mut h = Hx711::new();
        h.load = -1234;
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
}
