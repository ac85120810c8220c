//! Simulated chips of the accel group (see the bus assignments in mod.rs):
//! an ADXL345 on spidev0.0 whose FIFO fills at the configured rate, from
//! the MCU clock of each transfer, with a known waveform.
//!
//! Control requests (`chip adxl345 ...` on the control socket):
//! - `chip adxl345 wave XAMP XFREQ Y Z`: x = XAMP·sin(2π·XFREQ·t), y and z
//!   constant (raw counts, 13-bit full resolution: 256 counts = 1 g on z);
//! - `chip adxl345 const X Y Z`: constant raw values;
//! - `chip adxl345 counter`: x counts samples (x = n mod 8192 - 4096), so
//!   that a lost or repeated sample shows; y and z as set before;
//! - `chip adxl345 status`: `measuring= rate= fifo= generated= read=
//!   overflowed= reg2c= reg2d= reg31= reg38=`.
//!
//! And an MPU-9250 on i2c.1 at 0x68 (accelerometer FIFO of 512 bytes,
//! big-endian x, y, z per 6-byte entry, 4000 samples/s with klippy's
//! ACCEL_CONFIG2), with the same requests as `chip mpu9250 ...`.

use std::f64::consts::PI;

use crate::clock::CLOCK_FREQ;
use crate::hw::bus::I2C_SUCCESS;
use crate::hw::sim::{SimI2cDevice, SimSpiDevice, SimState};

/// spidev0.0.
pub const ADXL345_BUS: u32 = 0;

/// What the simulated axes show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wave {
    /// x = amplitude·sin(2π·freq·n/rate) (raw counts), y and z constant.
    Sine { amp: f64, freq: f64, y: i16, z: i16 },
    /// Constant raw values.
    Const { x: i16, y: i16, z: i16 },
    /// x = n mod 8192 - 4096 (the sample number), y and z constant.
    Counter { y: i16, z: i16 },
}

impl Wave {
    /// Sample `n` at `rate` samples/s, clamped to `min..=max`.
    pub fn sample(&self, n: u64, rate: f64, min: i32, max: i32) -> [i16; 3] {
        let c = |v: i32| v.clamp(min, max) as i16;
        match *self {
            Wave::Sine { amp, freq, y, z } => {
                let t = n as f64 / rate;
                let x = (amp * (2.0 * PI * freq * t).sin()).round() as i32;
                [c(x), c(y as i32), c(z as i32)]
            }
            Wave::Const { x, y, z } => [c(x as i32), c(y as i32), c(z as i32)],
            Wave::Counter { y, z } => [((n & 0x1fff) as i32 - 4096) as i16, y, z],
        }
    }

    fn yz(&self) -> (i16, i16) {
        match *self {
            Wave::Sine { y, z, .. } | Wave::Const { y, z, .. } | Wave::Counter { y, z } => (y, z),
        }
    }

    /// Parse `wave A F Y Z`, `const X Y Z` or `counter`.
    fn parse(&self, words: &[&str]) -> Option<Result<Wave, String>> {
        let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
        let int = |s: &str| s.parse::<i16>().ok();
        Some(match words {
            ["wave", a, f, y, z] => match (num(a), num(f), int(y), int(z)) {
                (Some(amp), Some(freq), Some(y), Some(z)) => Ok(Wave::Sine { amp, freq, y, z }),
                _ => Err("usage: wave XAMP XFREQ Y Z".into()),
            },
            ["const", x, y, z] => match (int(x), int(y), int(z)) {
                (Some(x), Some(y), Some(z)) => Ok(Wave::Const { x, y, z }),
                _ => Err("usage: const X Y Z".into()),
            },
            ["counter"] => {
                let (y, z) = self.yz();
                Ok(Wave::Counter { y, z })
            }
            _ => return None,
        })
    }
}

/// A chip's sample clock and FIFO: samples are made at `rate` from the
/// clock times of the transfers (extended to 64 bits), pushed into a FIFO
/// of `capacity` entries whose oldest entries are lost when it is full.
pub struct Sampler {
    pub wave: Wave,
    last_clock: Option<u32>,
    now: u64,
    running: bool,
    rate: f64,
    start: u64,
    /// Samples made since the start (the next sample's number).
    pub generated: u64,
    /// Entries taken out of the FIFO.
    pub read: u64,
    /// Entries lost to a full FIFO.
    pub overflowed: u64,
    /// Set on an overflow, cleared by the chip model when it reports it.
    pub overflow_flag: bool,
    fifo: [[i16; 3]; 512],
    head: usize,
    len: usize,
    capacity: usize,
    /// The newest sample (what a data register shows with an empty FIFO).
    pub latest: [i16; 3],
    min: i32,
    max: i32,
}

impl Sampler {
    pub fn new(capacity: usize, min: i32, max: i32, wave: Wave) -> Sampler {
        Sampler {
            wave,
            last_clock: None,
            now: 0,
            running: false,
            rate: 100.0,
            start: 0,
            generated: 0,
            read: 0,
            overflowed: 0,
            overflow_flag: false,
            fifo: [[0; 3]; 512],
            head: 0,
            len: 0,
            capacity: capacity.min(512),
            latest: [0; 3],
            min,
            max,
        }
    }

    /// Bring the FIFO up to MCU clock `clock`.
    pub fn advance(&mut self, clock: u32) {
        let d = match self.last_clock {
            Some(l) => clock.wrapping_sub(l) as i32,
            None => 0,
        };
        self.last_clock = Some(clock);
        // A transfer never goes back in time; ignore a clock that does.
        self.now += d.max(0) as u64;
        if !self.running {
            return;
        }
        let due = ((self.now - self.start) as f64 * self.rate / CLOCK_FREQ as f64) as u64;
        if due <= self.generated {
            return;
        }
        let mut n = due - self.generated;
        if n > self.capacity as u64 {
            // Only the newest `capacity` samples can still be in the FIFO.
            let skip = n - self.capacity as u64;
            self.overflowed += skip + self.len as u64;
            self.overflow_flag = true;
            self.generated += skip;
            self.len = 0;
            n = self.capacity as u64;
        }
        for _ in 0..n {
            let s = self
                .wave
                .sample(self.generated, self.rate, self.min, self.max);
            self.generated += 1;
            self.latest = s;
            if self.len == self.capacity {
                self.head = (self.head + 1) % self.capacity;
                self.len -= 1;
                self.overflowed += 1;
                self.overflow_flag = true;
            }
            self.fifo[(self.head + self.len) % self.capacity] = s;
            self.len += 1;
        }
    }

    /// Start (or restart at a new rate) making samples, from now.
    pub fn start(&mut self, rate: f64) {
        if self.running && rate == self.rate {
            return;
        }
        self.running = true;
        self.rate = rate;
        self.start = self.now;
        self.generated = 0;
    }

    pub fn stop(&mut self) {
        self.running = false;
    }

    pub fn running(&self) -> bool {
        self.running
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest entry (or the newest sample when empty).
    pub fn front(&self) -> [i16; 3] {
        if self.len == 0 {
            self.latest
        } else {
            self.fifo[self.head]
        }
    }

    pub fn pop(&mut self) -> Option<[i16; 3]> {
        if self.len == 0 {
            return None;
        }
        let s = self.fifo[self.head];
        self.head = (self.head + 1) % self.capacity;
        self.len -= 1;
        self.read += 1;
        Some(s)
    }

    fn status(&self) -> String {
        format!(
            "measuring={} rate={} fifo={} generated={} read={} overflowed={}",
            self.running as u8, self.rate, self.len, self.generated, self.read, self.overflowed
        )
    }
}

// ---------------------------------------------------------------------------
// ADXL345

const ADXL_DEVID: u8 = 0x00;
const ADXL_BW_RATE: usize = 0x2C;
const ADXL_POWER_CTL: usize = 0x2D;
const ADXL_INT_SOURCE: usize = 0x30;
const ADXL_DATA_FORMAT: usize = 0x31;
const ADXL_DATAX0: usize = 0x32;
const ADXL_DATAZ1: usize = 0x37;
const ADXL_FIFO_CTL: usize = 0x38;
const ADXL_FIFO_STATUS: usize = 0x39;

/// An ADXL345 (4-wire SPI, mode 3): registers, and a 32-entry FIFO in
/// stream mode (FIFO_CTL mode bits 10), in bypass mode only the data
/// registers.
pub struct Adxl345 {
    regs: [u8; 64],
    pub s: Sampler,
    /// Transfers seen (for the tests' curiosity).
    transfers: u64,
}

impl Default for Adxl345 {
    fn default() -> Self {
        Self::new()
    }
}

impl Adxl345 {
    pub fn new() -> Adxl345 {
        let mut regs = [0u8; 64];
        regs[ADXL_DEVID as usize] = 0xE5;
        regs[ADXL_BW_RATE] = 0x0A;
        regs[ADXL_INT_SOURCE] = 0x02;
        Adxl345 {
            regs,
            // A 40 Hz sine of 1000 counts on x, y = 100, z = 1 g.
            s: Sampler::new(
                32,
                -4096,
                4095,
                Wave::Sine {
                    amp: 1000.0,
                    freq: 40.0,
                    y: 100,
                    z: 256,
                },
            ),
            transfers: 0,
        }
    }

    /// Samples per second of a BW_RATE code.
    fn rate(&self) -> f64 {
        3200.0 / f64::powi(2.0, 15 - (self.regs[ADXL_BW_RATE] & 0x0f) as i32)
    }

    fn stream(&self) -> bool {
        self.regs[ADXL_FIFO_CTL] >> 6 != 0
    }

    fn read_reg(&self, r: usize, entry: [i16; 3]) -> u8 {
        match r {
            ADXL_DATAX0..=ADXL_DATAZ1 => {
                let v = entry[(r - ADXL_DATAX0) / 2].to_le_bytes();
                v[(r - ADXL_DATAX0) % 2]
            }
            ADXL_FIFO_STATUS => {
                if self.stream() {
                    self.s.len() as u8
                } else {
                    0
                }
            }
            ADXL_INT_SOURCE => {
                // DATA_READY, WATERMARK (16 entries), OVERRUN.
                let n = self.s.len();
                0x02 | (((n > 0) as u8) << 7)
                    | (((n >= 16) as u8) << 1)
                    | self.s.overflow_flag as u8
            }
            _ => self.regs[r & 0x3f],
        }
    }

    fn write_reg(&mut self, r: usize, v: u8) {
        match r {
            ADXL_BW_RATE | ADXL_DATA_FORMAT | 0x1D..=0x2A | 0x2E | 0x2F => self.regs[r] = v,
            ADXL_POWER_CTL => {
                self.regs[r] = v;
                if v & 0x08 != 0 {
                    let rate = self.rate();
                    self.s.start(rate);
                } else {
                    self.s.stop();
                }
            }
            ADXL_FIFO_CTL => {
                self.regs[r] = v;
                if v >> 6 == 0 {
                    // Bypass mode empties the FIFO.
                    self.s.clear();
                }
            }
            _ => {} // read-only or reserved
        }
        if r == ADXL_BW_RATE && self.s.running() {
            let rate = self.rate();
            self.s.start(rate);
        }
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        let ["adxl345", rest @ ..] = words else {
            return None;
        };
        if rest == ["status"] {
            return Some(format!(
                "{} transfers={} reg2c={:#04x} reg2d={:#04x} reg31={:#04x} reg38={:#04x}",
                self.s.status(),
                self.transfers,
                self.regs[ADXL_BW_RATE],
                self.regs[ADXL_POWER_CTL],
                self.regs[ADXL_DATA_FORMAT],
                self.regs[ADXL_FIFO_CTL]
            ));
        }
        Some(match self.s.wave.parse(rest) {
            Some(Ok(w)) => {
                self.s.wave = w;
                "ok".into()
            }
            Some(Err(e)) => format!("error {e}"),
            None => "error adxl345: wave XAMP XFREQ Y Z | const X Y Z | counter | status".into(),
        })
    }
}

impl SimSpiDevice for Adxl345 {
    fn transfer(&mut self, clock: u32, data: &mut [u8]) {
        self.s.advance(clock);
        self.transfers += 1;
        let Some(&cmd) = data.first() else {
            return;
        };
        data[0] = 0;
        let reg = (cmd & 0x3f) as usize;
        let multi = cmd & 0x40 != 0;
        let addr = |k: usize| if multi { (reg + k) & 0x3f } else { reg };
        if cmd & 0x80 != 0 {
            let entry = if self.stream() {
                self.s.front()
            } else {
                self.s.latest
            };
            let mut data_read = false;
            for k in 0..data.len() - 1 {
                let r = addr(k);
                data[k + 1] = self.read_reg(r, entry);
                data_read |= (ADXL_DATAX0..=ADXL_DATAZ1).contains(&r);
            }
            // Reading the data registers pops one entry, at the end of the
            // transfer (FIFO_STATUS read in the same burst counts it).
            if data_read && self.stream() {
                self.s.pop();
                if self.s.is_empty() {
                    self.s.overflow_flag = false;
                }
            }
        } else {
            for k in 0..data.len() - 1 {
                let v = data[k + 1];
                self.write_reg(addr(k), v);
                data[k + 1] = 0;
            }
        }
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        Adxl345::control(self, words)
    }
}

// ---------------------------------------------------------------------------
// MPU-9250

/// i2c.1, address 0x68.
pub const MPU9250_BUS: u32 = 1;
pub const MPU9250_ADDR: u8 = 0x68;

const MPU_SMPLRT_DIV: usize = 0x19;
const MPU_ACCEL_CONFIG2: usize = 0x1D;
const MPU_FIFO_EN: usize = 0x23;
const MPU_INT_STATUS: usize = 0x3A;
const MPU_USER_CTRL: usize = 0x6A;
const MPU_PWR_MGMT_1: usize = 0x6B;
const MPU_PWR_MGMT_2: usize = 0x6C;
const MPU_FIFO_COUNT_H: usize = 0x72;
const MPU_FIFO_COUNT_L: usize = 0x73;
const MPU_FIFO_R_W: usize = 0x74;
const MPU_WHO_AM_I: usize = 0x75;
const MPU_FIFO_BYTES: usize = 512;

/// An MPU-9250: registers, and the FIFO holding accelerometer entries of
/// 6 bytes (whole entries; the oldest overwritten when full).
pub struct Mpu9250 {
    regs: [u8; 128],
    pointer: usize,
    pub s: Sampler,
    /// Bytes of the oldest entry already read out.
    head_bytes: usize,
}

impl Default for Mpu9250 {
    fn default() -> Self {
        Self::new()
    }
}

impl Mpu9250 {
    pub fn new() -> Mpu9250 {
        let mut regs = [0u8; 128];
        regs[MPU_WHO_AM_I] = 0x71;
        regs[MPU_PWR_MGMT_1] = 0x01;
        Mpu9250 {
            regs,
            pointer: 0,
            // ±8 g (klippy's ACCEL_CONFIG): 4096 counts = 1 g.
            s: Sampler::new(
                MPU_FIFO_BYTES / 6,
                -32768,
                32767,
                Wave::Sine {
                    amp: 2000.0,
                    freq: 40.0,
                    y: 100,
                    z: 4096,
                },
            ),
            head_bytes: 0,
        }
    }

    fn rate(&self) -> f64 {
        if self.regs[MPU_ACCEL_CONFIG2] & 0x08 != 0 {
            4000.0
        } else {
            1000.0 / (1.0 + self.regs[MPU_SMPLRT_DIV] as f64)
        }
    }

    /// Whether accelerometer entries go into the FIFO.
    fn filling(&self) -> bool {
        self.regs[MPU_PWR_MGMT_1] & 0x40 == 0
            && self.regs[MPU_PWR_MGMT_2] & 0x38 == 0
            && self.regs[MPU_USER_CTRL] & 0x40 != 0
            && self.regs[MPU_FIFO_EN] & 0x08 != 0
    }

    fn update(&mut self) {
        if self.filling() {
            let rate = self.rate();
            self.s.start(rate);
        } else {
            self.s.stop();
        }
    }

    fn fifo_count(&self) -> usize {
        (self.s.len() * 6).saturating_sub(self.head_bytes)
    }

    fn read_byte(&mut self, r: usize) -> u8 {
        match r {
            MPU_FIFO_COUNT_H => (self.fifo_count() >> 8) as u8,
            MPU_FIFO_COUNT_L => self.fifo_count() as u8,
            MPU_INT_STATUS => {
                let v = (self.s.overflow_flag as u8) << 4 | (!self.s.is_empty()) as u8;
                self.s.overflow_flag = false;
                v
            }
            MPU_FIFO_R_W => {
                if self.s.is_empty() {
                    return 0xff;
                }
                let e = self.s.front();
                let b = e[self.head_bytes / 2].to_be_bytes()[self.head_bytes % 2];
                self.head_bytes += 1;
                if self.head_bytes == 6 {
                    self.head_bytes = 0;
                    self.s.pop();
                }
                b
            }
            _ => self.regs[r & 0x7f],
        }
    }

    fn write_byte(&mut self, r: usize, v: u8) {
        match r {
            MPU_WHO_AM_I | MPU_INT_STATUS | MPU_FIFO_COUNT_H | MPU_FIFO_COUNT_L => {}
            MPU_FIFO_R_W => {}
            MPU_USER_CTRL => {
                if v & 0x04 != 0 {
                    self.s.clear();
                    self.head_bytes = 0;
                }
                self.regs[r] = v & !0x07;
            }
            _ => self.regs[r & 0x7f] = v,
        }
        self.update();
    }
}

impl SimI2cDevice for Mpu9250 {
    fn write(&mut self, clock: u32, data: &[u8]) -> u8 {
        self.s.advance(clock);
        if let Some((&reg, rest)) = data.split_first() {
            self.pointer = reg as usize & 0x7f;
            for (k, &v) in rest.iter().enumerate() {
                self.write_byte((self.pointer + k) & 0x7f, v);
            }
        }
        I2C_SUCCESS
    }

    fn read(&mut self, clock: u32, reg: &[u8], out: &mut [u8]) -> u8 {
        self.s.advance(clock);
        if let Some(&r) = reg.first() {
            self.pointer = r as usize & 0x7f;
        }
        // FIFO_R_W does not advance the address; other registers do.
        let mut p = self.pointer;
        for o in out.iter_mut() {
            *o = self.read_byte(p);
            if p != MPU_FIFO_R_W {
                p = (p + 1) & 0x7f;
            }
        }
        I2C_SUCCESS
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        let ["mpu9250", rest @ ..] = words else {
            return None;
        };
        if rest == ["status"] {
            return Some(format!(
                "{} fifo_bytes={}",
                self.s.status(),
                self.fifo_count()
            ));
        }
        Some(match self.s.wave.parse(rest) {
            Some(Ok(w)) => {
                self.s.wave = w;
                "ok".into()
            }
            Some(Err(e)) => format!("error {e}"),
            None => "error mpu9250: wave XAMP XFREQ Y Z | const X Y Z | counter | status".into(),
        })
    }
}

/// Add this group's chips to the simulated board.
pub fn attach(s: &mut SimState) {
    s.spi_devices.push((ADXL345_BUS, Box::new(Adxl345::new())));
    s.i2c_devices
        .push((MPU9250_BUS, MPU9250_ADDR, Box::new(Mpu9250::new())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xfer(c: &mut Adxl345, clock: u32, d: &[u8]) -> Vec<u8> {
        let mut v = d.to_vec();
        c.transfer(clock, &mut v);
        v
    }

    #[test]
    fn adxl345_fifo_fills_at_the_rate_and_overflows() {
        let mut c = Adxl345::new();
        let mut t = 1000u32;
        assert_eq!(xfer(&mut c, t, &[0x80, 0])[1], 0xE5);
        xfer(&mut c, t, &[0x31, 0x0B]);
        xfer(&mut c, t, &[0x2C, 0x0F]); // 3200 Hz
        xfer(&mut c, t, &[0x38, 0x90]);
        c.s.wave = Wave::Counter { y: 7, z: 256 };
        xfer(&mut c, t, &[0x2D, 0x08]);
        // 10 samples' time.
        t = t.wrapping_add(10 * CLOCK_FREQ / 3200);
        let st = xfer(&mut c, t, &[0xB9, 0])[1];
        assert_eq!(st, 10);
        let mut msg = [0xF2u8, 0, 0, 0, 0, 0, 0, 0, 0];
        c.transfer(t, &mut msg);
        assert_eq!(i16::from_le_bytes([msg[1], msg[2]]), -4096);
        assert_eq!(i16::from_le_bytes([msg[3], msg[4]]), 7);
        assert_eq!(i16::from_le_bytes([msg[5], msg[6]]), 256);
        assert_eq!((msg[7], msg[8]), (0x90, 10));
        assert_eq!(xfer(&mut c, t, &[0xB9, 0])[1], 9);
        // A second's worth without reading: full, the rest lost.
        t = t.wrapping_add(CLOCK_FREQ);
        assert_eq!(xfer(&mut c, t, &[0xB9, 0])[1], 32);
        assert_eq!(c.s.generated, 3210);
        assert_eq!(c.s.overflowed, 3210 - 32 - 1);
    }
}
