//! Simulated chips of the thermo group (see the bus assignments in mod.rs):
//!
//! | bus       | number | chip                                  |
//! |-----------|--------|---------------------------------------|
//! | spidev1.0 | 256    | MAX31855 thermocouple amplifier       |
//! | spidev1.1 | 257    | MAX31856 thermocouple amplifier       |
//! | spidev1.2 | 258    | MAX31865 RTD amplifier (PT100, 430 R) |
//! | spidev1.3 | 259    | MAX6675 thermocouple amplifier        |
//! | spidev2.0 | 512    | AS5047D angle sensor                  |
//! | spidev2.1 | 513    | A1333 angle sensor                    |
//! | spidev2.2 | 514    | TLE5012B angle sensor                 |
//! | spidev2.3 | 515    | MT6816 angle sensor                   |
//! | spidev2.4 | 516    | MT6826S angle sensor                  |
//!
//! Control requests (`chip NAME ...` on the board's control socket):
//! - thermocouples (`max31855`, `max31856`, `max31865`, `max6675`):
//!   `temp C` sets the measured temperature, `fault BITS` the chip's fault
//!   bits (as the chip reports them: MAX31855 bits 0-2 open/short to
//!   GND/short to VCC; MAX31856 its fault status register; MAX31865 its
//!   fault status register; MAX6675 bits 1-2), `state` describes it;
//! - angle sensors (`as5047d`, `a1333`, `tle5012b`, `mt6816`, `mt6826s`):
//!   `angle DEG`, `rpm R` (turns at R revolutions per minute from now),
//!   `error 0|1` (the chip flags its reading as invalid), `crc 0|1`
//!   (replies with a bad parity/CRC), `state`.

use klipper_protocol::crc::{crc8_07, crc8_1d};

use crate::hw::sim::{SimSpiDevice, SimState};

const CLOCK_FREQ: f64 = 50_000_000.0;

/// Add this group's chips to the simulated board.
pub fn attach(s: &mut SimState) {
    s.spi_devices.push((256, Box::new(Max31855::default())));
    s.spi_devices.push((257, Box::new(Max31856::new())));
    s.spi_devices.push((258, Box::new(Max31865::new())));
    s.spi_devices.push((259, Box::new(Max6675::default())));
    s.spi_devices
        .push((512, Box::new(Angle::new(AngleChip::As5047d))));
    s.spi_devices
        .push((513, Box::new(Angle::new(AngleChip::A1333))));
    s.spi_devices
        .push((514, Box::new(Angle::new(AngleChip::Tle5012b))));
    s.spi_devices
        .push((515, Box::new(Angle::new(AngleChip::Mt6816))));
    s.spi_devices
        .push((516, Box::new(Angle::new(AngleChip::Mt6826s))));
}

/// `temp C` / `fault BITS` / `state` requests of a thermocouple chip.
fn thermo_control(
    name: &str,
    words: &[&str],
    temp: &mut f64,
    fault: &mut u8,
    state: impl Fn(f64, u8) -> String,
) -> Option<String> {
    let (first, rest) = words.split_first()?;
    if *first != name {
        return None;
    }
    Some(match rest {
        ["temp", t] => match t.parse::<f64>() {
            Ok(v) if v.is_finite() => {
                *temp = v;
                "ok".into()
            }
            _ => format!("error usage: chip {name} temp CELSIUS"),
        },
        ["fault", f] => match parse_u8(f) {
            Some(v) => {
                *fault = v;
                "ok".into()
            }
            None => format!("error usage: chip {name} fault BITS"),
        },
        ["state"] => state(*temp, *fault),
        _ => format!("error usage: chip {name} temp CELSIUS | fault BITS | state"),
    })
}

fn parse_u8(s: &str) -> Option<u8> {
    match s.strip_prefix("0x") {
        Some(h) => u8::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Two's complement of `v / unit` (rounded) in `bits` bits.
fn fixed(v: f64, unit: f64, bits: u32) -> u32 {
    let max = (1i64 << (bits - 1)) - 1;
    let min = -(1i64 << (bits - 1));
    let n = (v / unit).round().clamp(min as f64, max as f64) as i64;
    (n as u32) & ((1u32 << bits) - 1)
}

/// MAX31855: 32 bits out per read, no commands.
pub struct Max31855 {
    temp: f64,
    /// The cold-junction (internal) temperature.
    internal: f64,
    fault: u8,
}

impl Default for Max31855 {
    fn default() -> Self {
        Max31855 {
            temp: 25.0,
            internal: 25.0,
            fault: 0,
        }
    }
}

impl Max31855 {
    fn word(&self) -> u32 {
        let f = (self.fault & 0x07) as u32;
        (fixed(self.temp, 0.25, 14) << 18)
            | (((f != 0) as u32) << 16)
            | (fixed(self.internal, 0.0625, 12) << 4)
            | f
    }
}

/// A read-only converter's transfer: its word, then zeros.
fn shift_out(word: &[u8], data: &mut [u8]) {
    for (k, b) in data.iter_mut().enumerate() {
        *b = word.get(k).copied().unwrap_or(0);
    }
}

impl SimSpiDevice for Max31855 {
    fn transfer(&mut self, _clock: u32, data: &mut [u8]) {
        shift_out(&self.word().to_be_bytes(), data);
    }
    fn control(&mut self, words: &[&str]) -> Option<String> {
        let word = self.word();
        thermo_control(
            "max31855",
            words,
            &mut self.temp,
            &mut self.fault,
            |t, f| format!("temp={t} fault={f} word={word:08x}"),
        )
    }
}

/// A chip with a 16-register file: the first byte of a transfer is the
/// address, with bit 7 set for a write; then data, auto-incrementing.
fn register_transfer(regs: &mut [u8; 16], data: &mut [u8], read: impl Fn(&[u8; 16], u8) -> u8) {
    let Some(&cmd) = data.first() else { return };
    let write = cmd & 0x80 != 0;
    let mut addr = cmd & 0x0f;
    data[0] = 0;
    for b in data[1..].iter_mut() {
        if write {
            regs[addr as usize] = *b;
            *b = 0;
        } else {
            *b = read(regs, addr);
        }
        addr = (addr + 1) & 0x0f;
    }
}

/// MAX31856: registers as the datasheet; the linearized thermocouple
/// temperature (0x0C-0x0E) converts only with CR0's automatic mode on.
pub struct Max31856 {
    regs: [u8; 16],
    temp: f64,
    fault: u8,
}

impl Max31856 {
    fn new() -> Max31856 {
        let mut regs = [0u8; 16];
        regs[..9].copy_from_slice(&[0x00, 0x03, 0xFF, 0x7F, 0xC0, 0x7F, 0xFF, 0x80, 0x00]);
        Max31856 {
            regs,
            temp: 25.0,
            fault: 0,
        }
    }
}

impl SimSpiDevice for Max31856 {
    fn transfer(&mut self, _clock: u32, data: &mut [u8]) {
        if self.regs[0] & 0x80 != 0 {
            let v = fixed(self.temp, 0.0078125, 19) << 5;
            self.regs[0x0C] = (v >> 16) as u8;
            self.regs[0x0D] = (v >> 8) as u8;
            self.regs[0x0E] = v as u8;
        }
        self.regs[0x0F] = self.fault;
        register_transfer(&mut self.regs, data, |r, a| r[a as usize]);
    }
    fn control(&mut self, words: &[&str]) -> Option<String> {
        let regs = self.regs;
        thermo_control(
            "max31856",
            words,
            &mut self.temp,
            &mut self.fault,
            |t, f| {
                format!(
                    "temp={t} fault={f} cr0={:02x} cr1={:02x} mask={:02x}",
                    regs[0], regs[1], regs[2]
                )
            },
        )
    }
}

/// MAX31865 with a PT100 and a 430 ohm reference: the RTD register holds
/// the 15-bit resistance ratio and a fault bit; conversions run while the
/// configuration has the bias and automatic mode on; fault bits latch in
/// the status register until a write of the configuration with its
/// fault-clear bit.
pub struct Max31865 {
    regs: [u8; 16],
    temp: f64,
    /// Fault conditions present.
    fault: u8,
    /// Fault status latched.
    latched: u8,
}

const RTD_NOMINAL: f64 = 100.0;
const RTD_REFERENCE: f64 = 430.0;

impl Max31865 {
    fn new() -> Max31865 {
        let mut regs = [0u8; 16];
        regs[3] = 0xFF;
        regs[4] = 0xFF;
        Max31865 {
            regs,
            temp: 25.0,
            fault: 0,
            latched: 0,
        }
    }

    /// The 15-bit conversion result of the present temperature.
    fn code(&self) -> u16 {
        let t = self.temp;
        let r = RTD_NOMINAL * (1.0 + 3.9083e-3 * t - 5.775e-7 * t * t);
        (r / RTD_REFERENCE * 32768.0).round().clamp(0.0, 32767.0) as u16
    }

    fn convert(&mut self) {
        if self.regs[0] & 0xC0 != 0xC0 {
            return;
        }
        self.latched |= self.fault;
        let rtd = (self.code() << 1) | (self.latched != 0) as u16;
        self.regs[1] = (rtd >> 8) as u8;
        self.regs[2] = rtd as u8;
    }
}

impl SimSpiDevice for Max31865 {
    fn transfer(&mut self, _clock: u32, data: &mut [u8]) {
        self.convert();
        self.regs[7] = self.latched;
        let Some(&cmd) = data.first() else { return };
        register_transfer(&mut self.regs, data, |r, a| r[(a & 7) as usize]);
        if cmd == 0x80 && data.len() > 1 && self.regs[0] & 0x02 != 0 {
            // Fault clear: self-clearing bit.
            self.regs[0] &= !0x02;
            self.latched = 0;
            self.regs[7] = 0;
            self.regs[2] &= !1;
        }
    }
    fn control(&mut self, words: &[&str]) -> Option<String> {
        let (regs, code) = (self.regs, self.code());
        thermo_control(
            "max31865",
            words,
            &mut self.temp,
            &mut self.fault,
            |t, f| {
                format!(
                    "temp={t} fault={f} config={:02x} code={code} status={:02x}",
                    regs[0], regs[7]
                )
            },
        )
    }
}

/// MAX6675: 16 bits out per read.
#[derive(Default)]
pub struct Max6675 {
    temp: f64,
    fault: u8,
}

impl Max6675 {
    fn word(&self) -> u16 {
        let t = (self.temp / 0.25).round().clamp(0.0, 4095.0) as u16;
        (t << 3) | (self.fault & 0x07) as u16
    }
}

impl SimSpiDevice for Max6675 {
    fn transfer(&mut self, _clock: u32, data: &mut [u8]) {
        shift_out(&self.word().to_be_bytes(), data);
    }
    fn control(&mut self, words: &[&str]) -> Option<String> {
        let word = self.word();
        thermo_control("max6675", words, &mut self.temp, &mut self.fault, |t, f| {
            format!("temp={t} fault={f} word={word:04x}")
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AngleChip {
    As5047d,
    A1333,
    Tle5012b,
    Mt6816,
    Mt6826s,
}

/// A magnetic angle sensor; the magnet turns at `rpm` from `angle` at
/// clock `since`.
pub struct Angle {
    chip: AngleChip,
    angle: f64,
    rpm: f64,
    since: Option<u32>,
    error: bool,
    bad_crc: bool,
    /// AS5047D: the answer to the previous command (the bus is pipelined).
    pipeline: u16,
    /// TLE5012B: the angle latched by the last chip-select pulse, its
    /// frame counter, and whether it was read yet.
    latched: (u16, u8, bool),
}

fn parity16(w: u16) -> u16 {
    (w.count_ones() & 1) as u16
}

impl Angle {
    fn new(chip: AngleChip) -> Angle {
        Angle {
            chip,
            angle: 0.0,
            rpm: 0.0,
            since: None,
            error: false,
            bad_crc: false,
            pipeline: 0,
            latched: (0, 0, false),
        }
    }

    fn name(&self) -> &'static str {
        match self.chip {
            AngleChip::As5047d => "as5047d",
            AngleChip::A1333 => "a1333",
            AngleChip::Tle5012b => "tle5012b",
            AngleChip::Mt6816 => "mt6816",
            AngleChip::Mt6826s => "mt6826s",
        }
    }

    /// The angle in degrees at `clock`.
    fn degrees(&self, clock: u32) -> f64 {
        let dt = match self.since {
            Some(s) => clock.wrapping_sub(s) as i32 as f64 / CLOCK_FREQ,
            None => 0.0,
        };
        (self.angle + self.rpm * 6.0 * dt).rem_euclid(360.0)
    }

    /// The angle at `clock` as a 16-bit fraction of a turn.
    fn a16(&self, clock: u32) -> u16 {
        ((self.degrees(clock) / 360.0 * 65536.0) as u32 & 0xffff) as u16
    }

    fn as5047d(&mut self, clock: u32, data: &mut [u8]) {
        let out = self.pipeline.to_be_bytes();
        if data.len() >= 2 {
            let cmd = u16::from_be_bytes([data[0], data[1]]);
            if cmd & 0x4000 != 0 {
                let value = match cmd & 0x3FFF {
                    0x3FFE | 0x3FFF => self.a16(clock) >> 2,
                    // DIAAGC: offset compensation done, AGC mid-range.
                    0x3FFC => 0x0180,
                    _ => 0,
                };
                let mut w = value | ((self.error as u16) << 14);
                w |= parity16(w) << 15;
                if self.bad_crc {
                    w ^= 0x8000;
                }
                self.pipeline = w;
            } else {
                self.pipeline = 0;
            }
        }
        for (b, o) in data.iter_mut().zip(out) {
            *b = o;
        }
    }

    fn tle5012b(&mut self, clock: u32, data: &mut [u8]) {
        if data.is_empty() {
            // A chip-select pulse latches the angle and the frame counter
            // (counting at 750 kHz / 32).
            let fcnt = ((clock as u64 * 750_000 / 32 / CLOCK_FREQ as u64) & 0x3f) as u8;
            self.latched = (self.a16(clock), fcnt, true);
            return;
        }
        if data.len() < 2 {
            return;
        }
        let cmd = [data[0], data[1]];
        let read = cmd[0] & 0x80 != 0;
        let addr = (u16::from_be_bytes(cmd) >> 4) & 0x3f;
        let nd = (cmd[1] & 0x0f) as usize;
        let mut words = [0u16; 16];
        let n = if read { nd } else { 0 };
        let upd = cmd[0] & 0x04 != 0;
        let (la, lf, fresh) = self.latched;
        let (a, f) = if upd {
            (la, lf)
        } else {
            let fc = ((clock as u64 * 750_000 / 32 / CLOCK_FREQ as u64) & 0x3f) as u8;
            (self.a16(clock), fc)
        };
        for (k, w) in words.iter_mut().enumerate().take(n) {
            *w = match addr as usize + k {
                // STAT: no errors.
                0x00 => 0x0000,
                0x02 => ((fresh || !upd) as u16) << 15 | (a >> 1),
                0x04 => (f as u16) << 9,
                _ => 0,
            };
        }
        if upd && n > 0 && addr <= 0x02 && addr as usize + n > 0x02 {
            self.latched.2 = false;
        }
        let mut resp = [0u8; 40];
        resp[..2].copy_from_slice(&cmd);
        for k in 0..n {
            resp[2 + 2 * k..4 + 2 * k].copy_from_slice(&words[k].to_be_bytes());
        }
        let stat: u8 = if self.error { 0x60 } else { 0x70 };
        let crc = !crc8_1d(0xff, &resp[..2 + 2 * n]) ^ (self.bad_crc as u8);
        resp[2 + 2 * n] = stat;
        resp[3 + 2 * n] = crc;
        let m = data.len().min(4 + 2 * n);
        data[2..m].copy_from_slice(&resp[2..m]);
        for b in data[m..].iter_mut() {
            *b = 0;
        }
    }
}

impl SimSpiDevice for Angle {
    fn transfer(&mut self, clock: u32, data: &mut [u8]) {
        let a = self.a16(clock);
        match self.chip {
            AngleChip::As5047d => self.as5047d(clock, data),
            AngleChip::Tle5012b => self.tle5012b(clock, data),
            AngleChip::A1333 => {
                if data.len() >= 2 {
                    data[0] = ((a >> 9) as u8 & 0x7f) | ((self.bad_crc as u8) << 7);
                    data[1] = (a >> 1) as u8;
                }
            }
            AngleChip::Mt6816 => {
                if data.len() >= 3 {
                    data[0] = 0;
                    data[1] = (a >> 8) as u8;
                    data[2] = (a as u8 & 0xfc) | ((self.error as u8) << 1);
                    let p = ((data[1] ^ data[2]).count_ones() & 1) as u8;
                    data[2] |= p ^ (self.bad_crc as u8);
                }
            }
            AngleChip::Mt6826s => {
                if data.len() >= 6 {
                    data[0] = 0;
                    data[1] = 0;
                    data[2] = (a >> 8) as u8;
                    data[3] = a as u8 & 0xfe;
                    data[4] = (self.error as u8) << 1;
                    data[5] = crc8_07(0, &data[2..5]) ^ (self.bad_crc as u8);
                }
            }
        }
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        let (first, rest) = words.split_first()?;
        if *first != self.name() {
            return None;
        }
        let now = crate::clock::Clock::new().now();
        Some(match rest {
            ["angle", d] => match d.parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    self.angle = v;
                    self.since = None;
                    self.rpm = 0.0;
                    "ok".into()
                }
                _ => "error usage: angle DEGREES".into(),
            },
            ["rpm", r] => match r.parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    self.angle = self.degrees(now);
                    self.since = Some(now);
                    self.rpm = v;
                    "ok".into()
                }
                _ => "error usage: rpm REV_PER_MIN".into(),
            },
            ["error", v @ ("0" | "1")] => {
                self.error = *v == "1";
                "ok".into()
            }
            ["crc", v @ ("0" | "1")] => {
                self.bad_crc = *v == "1";
                "ok".into()
            }
            ["state"] => format!(
                "angle={:.4} rpm={} error={} crc={}",
                self.degrees(now),
                self.rpm,
                self.error as u8,
                self.bad_crc as u8
            ),
            _ => format!(
                "error usage: chip {} angle DEG | rpm R | error 0|1 | crc 0|1 | state",
                self.name()
            ),
        })
    }
}
