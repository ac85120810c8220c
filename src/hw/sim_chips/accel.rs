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
//!
//! And, with the same requests under their names (`status` fields vary):
//! - `lis2dw`: a LIS2DW on spidev0.1 (SPI bus number 1), and `lis2dw-i2c`,
//!   a second one on i2c.1 at 0x19 (32-sample FIFO, 14-bit samples
//!   left-justified, little-endian; see [`Lis2dw`]);
//! - `icm20948`: an ICM-20948 on i2c.1 at 0x69 (register banks, 512-byte
//!   FIFO of big-endian entries, 4500 samples/s as klippy sets it; see
//!   [`Icm20948`]);
//! - `bmi160`: a BMI160 on spidev0.2 (SPI bus number 2; 1024-byte FIFO of
//!   header-less little-endian frames; see [`Bmi160`]).
//!
//! Each chip's default waveform is a 40 Hz sine on x, y = 100 and z = 1 g
//! in its klippy range's counts.

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
    /// Whether new samples go into the FIFO (else only into `latest`, as
    /// a chip whose FIFO is in bypass mode or disabled).
    pub fifo_on: bool,
    fifo: [[i16; 3]; 512],
    head: usize,
    len: usize,
    capacity: usize,
    /// The newest sample (what a data register shows with an empty FIFO).
    pub latest: [i16; 3],
    min: i32,
    max: i32,
    /// Bytes of the oldest entry already read, for the chips whose FIFO
    /// is read a byte at a time (six a 3-axis entry).
    byte_head: usize,
}

impl Sampler {
    /// A FIFO of `capacity` entries of `bits`-bit samples, showing a 40 Hz
    /// sine of `amp` counts on x, y = 100 and z = `z`.
    pub fn sine(capacity: usize, bits: u32, amp: f64, z: i16) -> Sampler {
        let wave = Wave::Sine {
            amp,
            freq: 40.0,
            y: 100,
            z,
        };
        Sampler::new(capacity, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, wave)
    }

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
            fifo_on: true,
            fifo: [[0; 3]; 512],
            head: 0,
            len: 0,
            capacity: capacity.min(512),
            latest: [0; 3],
            min,
            max,
            byte_head: 0,
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
        if !self.fifo_on {
            // Only the data registers change.
            self.generated = due;
            self.latest = self.wave.sample(due - 1, self.rate, self.min, self.max);
            return;
        }
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

    /// Run at `rate`, or stop with None: what a chip's power and rate
    /// registers say.
    pub fn power(&mut self, rate: Option<f64>) {
        match rate {
            Some(rate) => self.start(rate),
            None => self.stop(),
        }
    }

    pub fn running(&self) -> bool {
        self.running
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.byte_head = 0;
    }

    /// Empty the FIFO and forget an overflow (a FIFO reset).
    pub fn flush(&mut self) {
        self.clear();
        self.overflow_flag = false;
    }

    /// The bytes in the FIFO, read a byte at a time.
    pub fn fifo_bytes(&self) -> usize {
        (self.len * 6).saturating_sub(self.byte_head)
    }

    /// The FIFO's next byte (each axis big- or little-endian), or None
    /// when it is empty.
    pub fn pop_byte(&mut self, little_endian: bool) -> Option<u8> {
        if self.is_empty() {
            return None;
        }
        let b = axis_byte(self.front(), self.byte_head, little_endian);
        self.byte_head += 1;
        if self.byte_head == 6 {
            self.byte_head = 0;
            self.pop();
        }
        Some(b)
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

/// Byte `k` of an x, y, z entry laid out as 16-bit values (a chip's data
/// registers or FIFO entry), each little- or big-endian.
fn axis_byte(entry: [i16; 3], k: usize, little_endian: bool) -> u8 {
    let v = entry[k / 2];
    let bytes = if little_endian {
        v.to_le_bytes()
    } else {
        v.to_be_bytes()
    };
    bytes[k % 2]
}

/// A control request to accelerometer `name` (sampler `s`): `NAME status`
/// answers the sampler's fields and then `fields(s)`, the chip's own; the
/// other requests set the waveform (see [`Wave::parse`]).
fn accel_control(
    name: &str,
    s: &mut Sampler,
    words: &[&str],
    fields: impl FnOnce(&Sampler) -> String,
) -> Option<String> {
    let [first, rest @ ..] = words else {
        return None;
    };
    if *first != name {
        return None;
    }
    if rest == ["status"] {
        return Some(format!("{} {}", s.status(), fields(s)));
    }
    Some(match s.wave.parse(rest) {
        Some(Ok(w)) => {
            s.wave = w;
            "ok".into()
        }
        Some(Err(e)) => format!("error {e}"),
        None => format!("error {name}: wave XAMP XFREQ Y Z | const X Y Z | counter | status"),
    })
}

/// An accelerometer model's SPI device: each transfer brings its sampler
/// up to the transfer's clock, bumps the counter field given and goes to
/// `$transfer`; control requests go to the model's own `control`.
macro_rules! spi_chip {
    ($ty:ident, $transfer:path, $count:ident) => {
        impl SimSpiDevice for $ty {
            fn transfer(&mut self, clock: u32, data: &mut [u8]) {
                self.s.advance(clock);
                self.$count += 1;
                $transfer(self, data)
            }

            fn control(&mut self, words: &[&str]) -> Option<String> {
                $ty::control(self, words)
            }
        }
    };
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

impl Adxl345 {
    pub(crate) fn new() -> Adxl345 {
        let mut regs = [0u8; 64];
        regs[ADXL_DEVID as usize] = 0xE5;
        regs[ADXL_BW_RATE] = 0x0A;
        regs[ADXL_INT_SOURCE] = 0x02;
        Adxl345 {
            regs,
            // A 40 Hz sine of 1000 counts on x, y = 100, z = 1 g.
            s: Sampler::sine(32, 13, 1000.0, 256),
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
            ADXL_DATAX0..=ADXL_DATAZ1 => axis_byte(entry, r - ADXL_DATAX0, true),
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
                let rate = (v & 0x08 != 0).then(|| self.rate());
                self.s.power(rate);
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
        accel_control("adxl345", &mut self.s, words, |_| {
            format!(
                "transfers={} reg2c={:#04x} reg2d={:#04x} reg31={:#04x} reg38={:#04x}",
                self.transfers,
                self.regs[ADXL_BW_RATE],
                self.regs[ADXL_POWER_CTL],
                self.regs[ADXL_DATA_FORMAT],
                self.regs[ADXL_FIFO_CTL]
            )
        })
    }

    /// Its SPI protocol: bit 7 read, bit 6 multi-byte, bits 5:0 the
    /// register.
    fn spi_transfer(&mut self, data: &mut [u8]) {
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
}

spi_chip!(Adxl345, Adxl345::spi_transfer, transfers);

/// The register-file glue of an accelerometer model: [`RegFile`] through
/// the model's own `read_byte`, `write_byte` and `next`; with `i2c`, also
/// its I2C device on that register file (its sampler brought up to each
/// transfer's clock, the counter field given after `i2c` bumped), whose
/// control requests go to the model's own `control`.
macro_rules! reg_file_chip {
    ($ty:ident) => {
        impl RegFile for $ty {
            fn read_byte(&mut self, r: usize) -> u8 {
                $ty::read_byte(self, r)
            }
            fn write_byte(&mut self, r: usize, v: u8) {
                $ty::write_byte(self, r, v)
            }
            fn next(&self, r: usize) -> usize {
                $ty::next(self, r)
            }
        }
    };
    ($ty:ident, i2c $(, $count:ident)?) => {
        reg_file_chip!($ty);

        impl I2cRegFile for $ty {
            fn pointer(&mut self) -> &mut usize {
                &mut self.pointer
            }
        }

        impl SimI2cDevice for $ty {
            fn write(&mut self, clock: u32, data: &[u8]) -> u8 {
                self.s.advance(clock);
                $(self.$count += 1;)?
                reg_i2c_write(self, data)
            }

            fn read(&mut self, clock: u32, reg: &[u8], out: &mut [u8]) -> u8 {
                self.s.advance(clock);
                $(self.$count += 1;)?
                reg_i2c_read(self, reg, out)
            }

            fn control(&mut self, words: &[&str]) -> Option<String> {
                $ty::control(self, words)
            }
        }
    };
}

/// The register after `r` in a burst: `r` again where the address stays
/// (a FIFO data register), else the next one.
fn burst_next(r: usize, stay: bool) -> usize {
    if stay {
        r
    } else {
        (r + 1) & 0x7f
    }
}

/// A chip seen as a register file behind a pointer: what its bus
/// transfers need. The transfers themselves are [`reg_i2c_write`],
/// [`reg_i2c_read`] and [`reg_spi_transfer`], shared by the chips.
pub trait RegFile {
    fn read_byte(&mut self, r: usize) -> u8;
    fn write_byte(&mut self, r: usize, v: u8);
    /// The register after `r` in a burst (FIFO data registers stay put).
    fn next(&self, r: usize) -> usize {
        burst_next(r, false)
    }
}

/// A register file on I2C, with its register pointer.
pub trait I2cRegFile: RegFile {
    fn pointer(&mut self) -> &mut usize;
}

/// An I2C write: the register, then data written from there on.
pub fn reg_i2c_write<T: I2cRegFile>(c: &mut T, data: &[u8]) -> u8 {
    if let Some((&reg, rest)) = data.split_first() {
        // The LIS3DH's auto-increment bit (7) is ignored.
        let mut p = reg as usize & 0x7f;
        for &v in rest {
            c.write_byte(p, v);
            p = c.next(p);
        }
        *c.pointer() = p;
    }
    I2C_SUCCESS
}

/// An I2C read, from `reg` if given, else from the pointer.
pub fn reg_i2c_read<T: I2cRegFile>(c: &mut T, reg: &[u8], out: &mut [u8]) -> u8 {
    let mut p = match reg.first() {
        Some(&r) => r as usize & 0x7f,
        None => *c.pointer(),
    };
    for o in out.iter_mut() {
        *o = c.read_byte(p);
        p = c.next(p);
    }
    *c.pointer() = p;
    I2C_SUCCESS
}

/// An SPI transfer: a command byte (bit 7 read, the register below),
/// then the data.
pub fn reg_spi_transfer<T: RegFile>(c: &mut T, data: &mut [u8]) {
    let Some(&cmd) = data.first() else {
        return;
    };
    data[0] = 0;
    let mut r = (cmd & 0x7f) as usize;
    for d in data[1..].iter_mut() {
        if cmd & 0x80 != 0 {
            *d = c.read_byte(r);
        } else {
            c.write_byte(r, *d);
            *d = 0;
        }
        r = c.next(r);
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
}

impl Mpu9250 {
    pub(crate) fn new() -> Mpu9250 {
        let mut regs = [0u8; 128];
        regs[MPU_WHO_AM_I] = 0x71;
        regs[MPU_PWR_MGMT_1] = 0x01;
        Mpu9250 {
            regs,
            pointer: 0,
            // ±8 g (klippy's ACCEL_CONFIG): 4096 counts = 1 g.
            s: Sampler::sine(MPU_FIFO_BYTES / 6, 16, 2000.0, 4096),
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
        let rate = self.filling().then(|| self.rate());
        self.s.power(rate);
    }

    fn read_byte(&mut self, r: usize) -> u8 {
        match r {
            MPU_FIFO_COUNT_H => (self.s.fifo_bytes() >> 8) as u8,
            MPU_FIFO_COUNT_L => self.s.fifo_bytes() as u8,
            MPU_INT_STATUS => {
                let v = (self.s.overflow_flag as u8) << 4 | (!self.s.is_empty()) as u8;
                self.s.overflow_flag = false;
                v
            }
            MPU_FIFO_R_W => self.s.pop_byte(false).unwrap_or(0xff),
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
                }
                self.regs[r] = v & !0x07;
            }
            _ => self.regs[r & 0x7f] = v,
        }
        self.update();
    }

    /// FIFO_R_W does not advance the address; other registers do.
    fn next(&self, r: usize) -> usize {
        burst_next(r, r == MPU_FIFO_R_W)
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        accel_control("mpu9250", &mut self.s, words, |s| {
            format!("fifo_bytes={}", s.fifo_bytes())
        })
    }
}

reg_file_chip!(Mpu9250, i2c);

// ---------------------------------------------------------------------------
// LIS2DW

/// spidev0.1 (SPI bus number 1).
pub const LIS2DW_SPI_BUS: u32 = 1;
/// i2c.1, address 0x19 (SA0 high, klippy's default).
pub const LIS2DW_I2C_BUS: u32 = 1;
pub const LIS2DW_I2C_ADDR: u8 = 0x19;

const LIS_WHO_AM_I: usize = 0x0F;
const LIS_CTRL1: usize = 0x20;
const LIS_CTRL2: usize = 0x21;
const LIS_CTRL6: usize = 0x25;
const LIS_STATUS: usize = 0x27;
const LIS_OUT_X_L: usize = 0x28;
const LIS_OUT_Z_H: usize = 0x2D;
const LIS_FIFO_CTRL: usize = 0x2E;
const LIS_FIFO_SAMPLES: usize = 0x2F;
/// CTRL2: BOOT, SOFT_RESET, IF_ADD_INC.
const LIS_SOFT_RESET: u8 = 0x40;
const LIS_IF_ADD_INC: u8 = 0x04;

/// A LIS2DW(12) on SPI (mode 3, bit 7 of the first byte = read, bits 6:0
/// the address) or I2C: WHO_AM_I 0x44; CTRL1 ODR (bits 7:4) and MODE
/// (bits 3:2; low-power mode caps the rate at 200 Hz); CTRL2 IF_ADD_INC
/// (address auto-increment, on at reset) and SOFT_RESET; a 32-sample FIFO
/// (FIFO_CTRL FMode bits 7:5: 000 bypass, which empties it; any other mode
/// is modelled as continuous, the oldest sample overwritten when full);
/// FIFO_SAMPLES = FIFO_FTH (bit 7, level >= FIFO_CTRL's FTH), FIFO_OVR
/// (bit 6, set by an overwrite, cleared when a sample is read) and the
/// level (bits 5:0). The samples are 14-bit values left-justified in the
/// 16-bit OUT registers (the waveform is in 14-bit counts: ±16 g
/// (CTRL6 0x34) makes 512 counts 1 g, read by klippy as 2048 raw). Reading
/// OUT_Z_H takes the sample out of the FIFO, and with the FIFO on, an
/// auto-incremented read rolls over from OUT_Z_H (0x2D) to OUT_X_L (0x28),
/// so that one burst reads several samples, as sensor_lis2dw.c does.
pub struct Lis2dw {
    name: &'static str,
    regs: [u8; 64],
    pointer: usize,
    pub s: Sampler,
    transfers: u64,
}

impl Lis2dw {
    /// `name` is the chip's name for control requests.
    pub(crate) fn new(name: &'static str) -> Lis2dw {
        let mut c = Lis2dw {
            name,
            regs: [0; 64],
            pointer: 0,
            // A 40 Hz sine of 1000 counts on x, y = 100, z = 1 g (14-bit).
            s: Sampler::sine(32, 14, 1000.0, 512),
            transfers: 0,
        };
        c.reset();
        c
    }

    fn reset(&mut self) {
        self.regs = [0; 64];
        self.regs[LIS_WHO_AM_I] = 0x44;
        self.regs[LIS_CTRL2] = LIS_IF_ADD_INC;
        self.s.stop();
        self.s.flush();
        self.s.fifo_on = false;
    }

    /// Samples per second of CTRL1 (0 when powered down).
    fn rate(&self) -> f64 {
        const ODR: [f64; 10] = [
            0.0, 12.5, 12.5, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0,
        ];
        let c = self.regs[LIS_CTRL1];
        let r = ODR[((c >> 4) as usize).min(9)];
        if (c >> 2) & 3 == 0 {
            r.min(200.0)
        } else {
            r
        }
    }

    fn fifo_mode(&self) -> u8 {
        self.regs[LIS_FIFO_CTRL] >> 5
    }

    fn update(&mut self) {
        let rate = self.rate();
        self.s.power((rate > 0.0).then_some(rate));
        let on = self.fifo_mode() != 0;
        if !on {
            self.s.flush();
        }
        self.s.fifo_on = on;
    }

    fn fifo_samples(&self) -> u8 {
        if !self.s.fifo_on {
            return 0;
        }
        let n = self.s.len() as u8;
        let fth = self.regs[LIS_FIFO_CTRL] & 0x1f;
        ((n >= fth) as u8) << 7 | (self.s.overflow_flag as u8) << 6 | n
    }

    fn read_byte(&mut self, r: usize) -> u8 {
        match r {
            LIS_OUT_X_L..=LIS_OUT_Z_H => {
                let e = if self.s.fifo_on {
                    self.s.front()
                } else {
                    self.s.latest
                };
                // 14-bit samples, left-justified.
                let b = axis_byte(e.map(|v| v << 2), r - LIS_OUT_X_L, true);
                if r == LIS_OUT_Z_H && self.s.fifo_on && self.s.pop().is_some() {
                    self.s.overflow_flag = false;
                }
                b
            }
            LIS_STATUS => {
                // FIFO_THS (bit 7), DRDY (bit 0).
                (self.fifo_samples() & 0x80) | self.s.running() as u8
            }
            LIS_FIFO_SAMPLES => self.fifo_samples(),
            0x40.. => 0,
            _ => self.regs[r],
        }
    }

    fn write_byte(&mut self, r: usize, v: u8) {
        match r {
            LIS_CTRL1..=LIS_CTRL6 | LIS_FIFO_CTRL | 0x30..=0x3F => self.regs[r] = v,
            _ => return, // read-only or reserved
        }
        if r == LIS_CTRL2 && v & LIS_SOFT_RESET != 0 {
            // Self-clearing: every register back to its reset value.
            self.reset();
            return;
        }
        self.update();
    }

    /// The next address of a multi-byte access.
    fn next(&self, r: usize) -> usize {
        if self.regs[LIS_CTRL2] & LIS_IF_ADD_INC == 0 {
            r
        } else if r == LIS_OUT_Z_H && self.s.fifo_on {
            LIS_OUT_X_L
        } else {
            (r + 1) & 0x7f
        }
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        accel_control(self.name, &mut self.s, words, |s| {
            format!(
                "transfers={} fifo_on={} reg20={:#04x} reg21={:#04x} reg25={:#04x} reg2e={:#04x}",
                self.transfers,
                s.fifo_on as u8,
                self.regs[LIS_CTRL1],
                self.regs[LIS_CTRL2],
                self.regs[LIS_CTRL6],
                self.regs[LIS_FIFO_CTRL]
            )
        })
    }
}

reg_file_chip!(Lis2dw, i2c, transfers);
spi_chip!(Lis2dw, reg_spi_transfer, transfers);

// ---------------------------------------------------------------------------
// ICM-20948

/// i2c.1, address 0x69 (AD0 high).
pub const ICM20948_BUS: u32 = 1;
pub const ICM20948_ADDR: u8 = 0x69;

const ICM_WHO_AM_I: usize = 0x00;
const ICM_USER_CTRL: usize = 0x03;
const ICM_PWR_MGMT_1: usize = 0x06;
const ICM_PWR_MGMT_2: usize = 0x07;
const ICM_INT_STATUS: usize = 0x19;
const ICM_INT_STATUS_2: usize = 0x1B;
const ICM_ACCEL_XOUT_H: usize = 0x2D;
const ICM_ACCEL_ZOUT_L: usize = 0x32;
const ICM_FIFO_EN_2: usize = 0x67;
const ICM_FIFO_RST: usize = 0x68;
const ICM_FIFO_COUNTH: usize = 0x70;
const ICM_FIFO_COUNTL: usize = 0x71;
const ICM_FIFO_R_W: usize = 0x72;
const ICM_BANK_SEL: usize = 0x7F;
/// Bank 2.
const ICM_ACCEL_SMPLRT_DIV_1: usize = 0x10;
const ICM_ACCEL_SMPLRT_DIV_2: usize = 0x11;
const ICM_ACCEL_CONFIG: usize = 0x14;
const ICM_FIFO_BYTES: usize = 512;

/// An ICM-20948 (I2C): four register banks selected by REG_BANK_SEL
/// (0x7F, bits 5:4); bank 0 WHO_AM_I 0xEA, USER_CTRL (FIFO_EN bit 6;
/// SRAM_RST bit 2 empties the FIFO; the reset bits read back 0),
/// PWR_MGMT_1 (DEVICE_RESET bit 7, SLEEP bit 6, at reset 0x41),
/// PWR_MGMT_2 (accelerometer off bits 5:3), INT_STATUS_2 (FIFO_OVERFLOW_INT
/// bit 0, cleared by reading it), FIFO_EN_2 (ACCEL_FIFO_EN bit 4), FIFO_RST
/// (bits 4:0 empty the FIFO, bit 0 holds it empty while set), FIFO_COUNTH/L and FIFO_R_W (big-endian x, y,
/// z entries of 6 bytes; 512 bytes, the oldest entry overwritten when
/// full); bank 2 ACCEL_SMPLRT_DIV_1/2 and ACCEL_CONFIG (ACCEL_FCHOICE bit 0:
/// 0 = 4500 samples/s, as klippy sets it, else 1125/(1 + div)).
pub struct Icm20948 {
    banks: [[u8; 128]; 4],
    bank: usize,
    pointer: usize,
    pub s: Sampler,
}

impl Icm20948 {
    pub(crate) fn new() -> Icm20948 {
        let mut c = Icm20948 {
            banks: [[0; 128]; 4],
            bank: 0,
            pointer: 0,
            // ±16 g (klippy's ACCEL_CONFIG): 2048 counts = 1 g.
            s: Sampler::sine(ICM_FIFO_BYTES / 6, 16, 2000.0, 2048),
        };
        c.reset();
        c
    }

    fn reset(&mut self) {
        self.banks = [[0; 128]; 4];
        self.bank = 0;
        self.banks[0][ICM_PWR_MGMT_1] = 0x41;
        self.banks[2][ICM_ACCEL_CONFIG] = 0x01;
        self.s.flush();
        self.update();
    }

    fn rate(&self) -> f64 {
        let b2 = &self.banks[2];
        if b2[ICM_ACCEL_CONFIG] & 0x01 == 0 {
            4500.0
        } else {
            let div = ((b2[ICM_ACCEL_SMPLRT_DIV_1] as u32 & 0x0f) << 8)
                | b2[ICM_ACCEL_SMPLRT_DIV_2] as u32;
            1125.0 / (1.0 + div as f64)
        }
    }

    fn update(&mut self) {
        let b0 = &self.banks[0];
        let on = b0[ICM_PWR_MGMT_1] & 0x40 == 0 && b0[ICM_PWR_MGMT_2] & 0x38 == 0;
        // FIFO_RST bit 0 holds the (single) FIFO in reset while set.
        self.s.fifo_on = b0[ICM_USER_CTRL] & 0x40 != 0
            && b0[ICM_FIFO_EN_2] & 0x10 != 0
            && b0[ICM_FIFO_RST] & 0x01 == 0;
        let rate = on.then(|| self.rate());
        self.s.power(rate);
    }

    fn read_byte(&mut self, r: usize) -> u8 {
        if r == ICM_BANK_SEL {
            return (self.bank as u8) << 4;
        }
        if self.bank != 0 {
            return self.banks[self.bank][r];
        }
        match r {
            ICM_WHO_AM_I => 0xEA,
            ICM_INT_STATUS => 0,
            ICM_INT_STATUS_2 => {
                let v = self.s.overflow_flag as u8;
                self.s.overflow_flag = false;
                v
            }
            ICM_ACCEL_XOUT_H..=ICM_ACCEL_ZOUT_L => {
                axis_byte(self.s.latest, r - ICM_ACCEL_XOUT_H, false)
            }
            ICM_FIFO_COUNTH => (self.s.fifo_bytes() >> 8) as u8 & 0x1f,
            ICM_FIFO_COUNTL => self.s.fifo_bytes() as u8,
            ICM_FIFO_R_W => self.s.pop_byte(false).unwrap_or(0xff),
            _ => self.banks[0][r],
        }
    }

    fn write_byte(&mut self, r: usize, v: u8) {
        if r == ICM_BANK_SEL {
            self.bank = (v as usize >> 4) & 3;
            return;
        }
        if self.bank != 0 {
            self.banks[self.bank][r] = v;
            self.update();
            return;
        }
        match r {
            ICM_WHO_AM_I | ICM_INT_STATUS..=0x1C | ICM_ACCEL_XOUT_H..=0x3A => {}
            ICM_FIFO_COUNTH..=ICM_FIFO_R_W | 0x74 => {}
            ICM_PWR_MGMT_1 if v & 0x80 != 0 => return self.reset(),
            ICM_USER_CTRL => {
                if v & 0x04 != 0 {
                    self.s.clear();
                }
                // DMP_RST, SRAM_RST, I2C_MST_RST clear themselves.
                self.banks[0][r] = v & 0xF0;
            }
            ICM_FIFO_RST => {
                if v & 0x1f != 0 {
                    self.s.clear();
                }
                self.banks[0][r] = v & 0x1f;
            }
            _ => self.banks[0][r] = v,
        }
        self.update();
    }

    /// Bank 0's FIFO_R_W does not advance the address; other registers do.
    fn next(&self, r: usize) -> usize {
        burst_next(r, self.bank == 0 && r == ICM_FIFO_R_W)
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        accel_control("icm20948", &mut self.s, words, |s| {
            format!(
                "fifo_bytes={} bank={} user_ctrl={:#04x} fifo_en_2={:#04x} accel_config={:#04x}",
                s.fifo_bytes(),
                self.bank,
                self.banks[0][ICM_USER_CTRL],
                self.banks[0][ICM_FIFO_EN_2],
                self.banks[2][ICM_ACCEL_CONFIG]
            )
        })
    }
}

reg_file_chip!(Icm20948, i2c);

// ---------------------------------------------------------------------------
// BMI160

/// spidev0.2 (SPI bus number 2).
pub const BMI160_BUS: u32 = 2;

const BMI_CHIP_ID: usize = 0x00;
const BMI_PMU_STATUS: usize = 0x03;
const BMI_DATA_ACC_X_L: usize = 0x12;
const BMI_DATA_ACC_Z_H: usize = 0x17;
const BMI_STATUS: usize = 0x1B;
const BMI_FIFO_LENGTH_0: usize = 0x22;
const BMI_FIFO_LENGTH_1: usize = 0x23;
const BMI_FIFO_DATA: usize = 0x24;
const BMI_ACC_CONF: usize = 0x40;
const BMI_ACC_RANGE: usize = 0x41;
const BMI_FIFO_DOWNS: usize = 0x45;
const BMI_FIFO_CONFIG_0: usize = 0x46;
const BMI_FIFO_CONFIG_1: usize = 0x47;
const BMI_CMD: usize = 0x7E;
const BMI_FIFO_BYTES: usize = 1024;

/// A BMI160 on SPI (bit 7 of the first byte = read, bits 6:0 the address;
/// addresses auto-increment, except FIFO_DATA). It powers up in I2C mode:
/// the first chip-selected transfer only switches it to SPI (it answers
/// zeros and ignores what it is sent), which is why klippy starts with a
/// dummy read of 0x7F. CHIP_ID 0xD1; the accelerometer starts in suspend
/// mode: CMD 0x11 (normal) or 0x12 (low power) starts it, 0x10 suspends it,
/// 0xB0 flushes the FIFO, 0xB6 resets every register (and the interface to
/// I2C); PMU_STATUS shows the mode. ACC_CONF odr (bits 3:0) sets the rate,
/// 100·2^(odr-8) samples/s (0x2C: 1600), FIFO_DOWNS bits 6:4 divide the
/// rate by a power of two; FIFO_CONFIG_1 fifo_acc_en (bit 6) fills the
/// 1024-byte FIFO with header-less frames of 6 bytes (little-endian x, y, z;
/// header mode is not modelled), the oldest frame overwritten when full,
/// so FIFO_LENGTH (bytes, 11 bits) never exceeds 1020. Reading FIFO_DATA
/// past the end gives 0x80 bytes.
pub struct Bmi160 {
    regs: [u8; 128],
    spi_mode: bool,
    acc_on: bool,
    pub s: Sampler,
    transfers: u64,
}

impl Bmi160 {
    pub(crate) fn new() -> Bmi160 {
        let mut c = Bmi160 {
            regs: [0; 128],
            spi_mode: false,
            acc_on: false,
            // ±16 g (klippy's ACC_RANGE): 2048 counts = 1 g.
            s: Sampler::sine(BMI_FIFO_BYTES / 6, 16, 2000.0, 2048),
            transfers: 0,
        };
        c.reset();
        c
    }

    fn reset(&mut self) {
        self.regs = [0; 128];
        self.regs[BMI_CHIP_ID] = 0xD1;
        self.regs[BMI_ACC_CONF] = 0x28;
        self.regs[BMI_ACC_RANGE] = 0x03;
        self.regs[BMI_FIFO_DOWNS] = 0x88;
        self.regs[BMI_FIFO_CONFIG_0] = 0x80;
        self.regs[BMI_FIFO_CONFIG_1] = 0x10;
        self.spi_mode = false;
        self.acc_on = false;
        self.s.flush();
        self.update();
    }

    fn rate(&self) -> f64 {
        let odr = (self.regs[BMI_ACC_CONF] & 0x0f).clamp(1, 12) as i32;
        let downs = ((self.regs[BMI_FIFO_DOWNS] >> 4) & 7) as i32;
        100.0 * f64::powi(2.0, odr - 8 - downs)
    }

    fn update(&mut self) {
        self.s.fifo_on = self.regs[BMI_FIFO_CONFIG_1] & 0x40 != 0;
        let rate = self.acc_on.then(|| self.rate());
        self.s.power(rate);
    }

    fn read_byte(&mut self, r: usize) -> u8 {
        match r {
            BMI_PMU_STATUS => (self.acc_on as u8) << 4,
            BMI_DATA_ACC_X_L..=BMI_DATA_ACC_Z_H => {
                axis_byte(self.s.latest, r - BMI_DATA_ACC_X_L, true)
            }
            // drdy_acc.
            BMI_STATUS => (self.s.running() as u8) << 7,
            BMI_FIFO_LENGTH_0 => self.s.fifo_bytes() as u8,
            BMI_FIFO_LENGTH_1 => (self.s.fifo_bytes() >> 8) as u8 & 0x07,
            BMI_FIFO_DATA => self.s.pop_byte(true).unwrap_or(0x80),
            BMI_CMD => 0,
            _ => self.regs[r],
        }
    }

    fn write_byte(&mut self, r: usize, v: u8) {
        match r {
            BMI_CMD => match v {
                0x10 => self.acc_on = false,
                0x11 | 0x12 => self.acc_on = true,
                0xB0 => self.s.flush(),
                0xB6 => return self.reset(),
                _ => {}
            },
            0x40..=0x7D => self.regs[r] = v,
            _ => return, // read-only
        }
        self.update();
    }

    fn control(&mut self, words: &[&str]) -> Option<String> {
        accel_control("bmi160", &mut self.s, words, |s| {
            format!(
                "fifo_bytes={} transfers={} spi_mode={} acc_on={} \
                 reg40={:#04x} reg41={:#04x} reg45={:#04x} reg47={:#04x}",
                s.fifo_bytes(),
                self.transfers,
                self.spi_mode as u8,
                self.acc_on as u8,
                self.regs[BMI_ACC_CONF],
                self.regs[BMI_ACC_RANGE],
                self.regs[BMI_FIFO_DOWNS],
                self.regs[BMI_FIFO_CONFIG_1]
            )
        })
    }

    /// FIFO_DATA does not advance the address; other registers do.
    fn next(&self, r: usize) -> usize {
        burst_next(r, r == BMI_FIFO_DATA)
    }

    fn spi_transfer(&mut self, data: &mut [u8]) {
        if !self.spi_mode {
            // The rising edge of CSB at the end switches to SPI.
            self.spi_mode = true;
            data.fill(0);
            return;
        }
        reg_spi_transfer(self, data)
    }
}

reg_file_chip!(Bmi160);
spi_chip!(Bmi160, Bmi160::spi_transfer, transfers);

/// Add this group's chips to the simulated board.
pub fn attach(s: &mut SimState) {
    s.spi_devices.push((ADXL345_BUS, Box::new(Adxl345::new())));
    s.i2c_devices
        .push((MPU9250_BUS, MPU9250_ADDR, Box::new(Mpu9250::new())));
    s.spi_devices
        .push((LIS2DW_SPI_BUS, Box::new(Lis2dw::new("lis2dw"))));
    s.i2c_devices.push((
        LIS2DW_I2C_BUS,
        LIS2DW_I2C_ADDR,
        Box::new(Lis2dw::new("lis2dw-i2c")),
    ));
    s.i2c_devices
        .push((ICM20948_BUS, ICM20948_ADDR, Box::new(Icm20948::new())));
    s.spi_devices.push((BMI160_BUS, Box::new(Bmi160::new())));
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
