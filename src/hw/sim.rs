//! The simulated board (`--sim`): GPIO lines in memory. Output changes are
//! recorded with their clock times; inputs are driven from outside through
//! a control socket ([`SimControl`]), so tests and newcomers can exercise a
//! printer configuration with no Raspberry Pi.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::bus::{I2c, I2cHandle, Spi, SpiHandle, I2C_NACK, I2C_START_READ_NACK, I2C_SUCCESS};
use super::{Bias, Gpio, GpioIn, GpioOut, NOT_INPUT_PIN, NOT_OUTPUT_PIN};
use crate::clock::Clock;
use crate::pins::{GPIO_CHIPS, GPIO_LINES_PER_CHIP};
use crate::shutdown::Shutdown;

const LINES: usize = (GPIO_CHIPS * GPIO_LINES_PER_CHIP) as usize;
/// Output changes kept, for timing checks (a ring: the oldest go first).
const HISTORY: usize = 1 << 16;

/// One recorded output change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Edge {
    pub clock: u32,
    pub pin: u32,
    pub value: bool,
}

/// The board's state, shared by the GPIO backend and the control socket.
pub struct SimState {
    clock: Clock,
    levels: Vec<bool>,
    /// Rising and falling edges written to each line.
    rises: Vec<u32>,
    falls: Vec<u32>,
    bias: Vec<Option<Bias>>,
    outputs: Vec<bool>,
    history: Box<[Edge]>,
    history_len: u64,
    /// SPI: the last bytes sent on each opened bus.
    spi_last: Vec<(u32, Vec<u8>)>,
    /// I2C register files by (bus, address), with the register pointer.
    i2c_regs: Vec<(u32, u8, Box<[u8; 256]>, u8)>,
    /// The simulated HTU21D: temperature (C), relative humidity (%), and
    /// the measurement last asked for (0xE3/0xF3 temperature, else humidity).
    htu21d: (f64, f64, u8),
    /// Simulated chips (see [`crate::hw::sim_chips`]).
    pub spi_devices: Vec<(u32, Box<dyn SimSpiDevice>)>,
    pub i2c_devices: Vec<(u32, u8, Box<dyn SimI2cDevice>)>,
    pub gpio_devices: Vec<Box<dyn SimGpioDevice>>,
}

/// A simulated chip on an SPI bus (`bus` = B*256+D for spidevB.D).
pub trait SimSpiDevice {
    /// One chip-selected transfer at MCU clock `clock`: `data` holds what
    /// was sent and is replaced by what the chip answers.
    fn transfer(&mut self, clock: u32, data: &mut [u8]);
    /// A control-socket request addressed to this chip (`spi BUS ...`).
    fn control(&mut self, _words: &[&str]) -> Option<String> {
        None
    }
}

/// A simulated chip on an I2C bus; returns `i2c_bus_status` values.
pub trait SimI2cDevice {
    fn write(&mut self, clock: u32, data: &[u8]) -> u8;
    fn read(&mut self, clock: u32, reg: &[u8], out: &mut [u8]) -> u8;
    fn control(&mut self, _words: &[&str]) -> Option<String> {
        None
    }
}

/// A simulated chip on GPIO lines (bit-banged protocols): it sees every
/// output write and may drive input levels.
pub trait SimGpioDevice {
    fn on_write(&mut self, clock: u32, pin: u32, value: bool, levels: &mut [bool]);
    /// Called as a write returns, with the time then (the history's):
    /// what a chip that times edges should use, since the MCU reads its
    /// clock after the write (the tmcuart baud correction compares those
    /// readings), and the simulator's own work in between is no part of
    /// the line's timing.
    fn after_write(&mut self, _clock: u32) {}
    /// Called before an input is read, so the chip can update it.
    fn on_read(&mut self, _clock: u32, _pin: u32, _levels: &mut [bool]) {}
    fn control(&mut self, _words: &[&str]) -> Option<String> {
        None
    }
}

/// The HTU21D-compatible sensor on the simulated board: bus i2c.1, 0x40.
pub const HTU21D_BUS: u32 = 1;
pub const HTU21D_ADDR: u8 = 0x40;

/// Is there a register-file target at (bus, addr)? EEPROM-like ones at
/// 0x50-0x57 on every bus, and PCA9685-like ones at 0x40-0x47 on i2c.0.
fn has_register_file(bus: u32, addr: u8) -> bool {
    (0x50..=0x57).contains(&addr) || (bus == 0 && (0x40..=0x47).contains(&addr))
}

/// The HTU21D's CRC-8 (x^8 + x^5 + x^4 + 1) over a 16-bit word.
fn htu21d_crc(word: u16) -> u8 {
    let mut d = (word as u32) << 8;
    for i in 0..16 {
        if d & (0x80_0000 >> i) != 0 {
            d ^= 0x98_8000 >> i;
        }
    }
    d as u8
}

impl SimState {
    fn new() -> SimState {
        SimState {
            clock: Clock::new(),
            levels: vec![false; LINES],
            rises: vec![0; LINES],
            falls: vec![0; LINES],
            bias: vec![None; LINES],
            outputs: vec![false; LINES],
            history: vec![Edge::default(); HISTORY].into_boxed_slice(),
            history_len: 0,
            spi_last: Vec::new(),
            i2c_regs: Vec::new(),
            htu21d: (25.0, 50.0, 0xE3),
            spi_devices: Vec::new(),
            i2c_devices: Vec::new(),
            gpio_devices: Vec::new(),
        }
    }

    fn write(&mut self, pin: u32, value: bool) {
        // Two clock readings, as the write begins and as it ends (three
        // made a simulated write cost about 100 ns in the test build,
        // a WS2812 zero bit's two writes too close to its 500 ns).
        let now = self.clock.now();
        for d in self.gpio_devices.iter_mut() {
            d.on_write(now, pin, value, &mut self.levels);
        }
        let p = pin as usize;
        if self.levels[p] != value {
            if value {
                self.rises[p] += 1;
            } else {
                self.falls[p] += 1;
            }
        }
        self.levels[p] = value;
        let end = self.clock.now();
        let e = Edge {
            clock: end,
            pin,
            value,
        };
        self.history[(self.history_len % HISTORY as u64) as usize] = e;
        self.history_len += 1;
        for d in self.gpio_devices.iter_mut() {
            d.after_write(end);
        }
    }

    /// The recorded writes of `pin`, oldest first, at most `max`.
    pub fn history(&self, pin: u32, max: usize) -> Vec<Edge> {
        let n = self.history_len.min(HISTORY as u64);
        let mut out: Vec<Edge> = (self.history_len - n..self.history_len)
            .rev()
            .map(|i| self.history[(i % HISTORY as u64) as usize])
            .filter(|e| e.pin == pin)
            .take(max)
            .collect();
        out.reverse();
        out
    }

    /// Answer one control request (a line of text).
    pub fn control(&mut self, req: &str) -> String {
        let w: Vec<&str> = req.split_whitespace().collect();
        let pin = |s: &str| -> Option<usize> {
            let n = crate::pins::parse_gpio(s)? as usize;
            (n < LINES).then_some(n)
        };
        match w.as_slice() {
            ["set", p, v] => match (pin(p), *v) {
                (Some(p), "0" | "1") => {
                    if self.outputs[p] {
                        return format!("error {} is an output", w[1]);
                    }
                    self.levels[p] = *v == "1";
                    "ok".into()
                }
                _ => "error usage: set PIN 0|1".into(),
            },
            ["get", p] => match pin(p) {
                Some(p) => {
                    let bias = match self.bias[p] {
                        None => "none",
                        Some(Bias::AsIs) => "as-is",
                        Some(Bias::PullUp) => "pull-up",
                        Some(Bias::PullDown) => "pull-down",
                    };
                    format!(
                        "level={} rises={} falls={} output={} bias={bias}",
                        self.levels[p] as u8, self.rises[p], self.falls[p], self.outputs[p] as u8
                    )
                }
                None => "error usage: get PIN".into(),
            },
            ["history", p, n] => match (pin(p), n.parse::<usize>()) {
                (Some(p), Ok(n)) => self
                    .history(p as u32, n.min(512))
                    .iter()
                    .map(|e| format!("{}:{}", e.clock, e.value as u8))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => "error usage: history PIN COUNT".into(),
            },
            ["clock"] => format!("{}", self.clock.now()),
            ["chip", rest @ ..] => self.chip_control(rest),
            ["spi", bus] => match bus.parse::<u32>() {
                Ok(b) => match self.spi_last.iter().find(|e| e.0 == b) {
                    Some((_, d)) => hex(d),
                    None => "error spi bus not opened".into(),
                },
                Err(_) => "error usage: spi BUS (B*256+D)".into(),
            },
            ["i2c", bus, addr, reg, n] => {
                let (Ok(bus), Ok(addr), Ok(reg), Ok(n)) = (
                    bus.parse::<u32>(),
                    u8::from_str_radix(addr.trim_start_matches("0x"), 16),
                    reg.parse::<usize>(),
                    n.parse::<usize>(),
                ) else {
                    return "error usage: i2c BUS ADDR(hex) REG COUNT".into();
                };
                match self.i2c_regs.iter().find(|e| e.0 == bus && e.1 == addr) {
                    Some((_, _, regs, _)) => hex(&regs[reg.min(256)..(reg + n).min(256)]),
                    None => "error no such register file opened".into(),
                }
            }
            ["htu21d", t, h] => match (t.parse::<f64>(), h.parse::<f64>()) {
                (Ok(t), Ok(h)) => {
                    self.htu21d.0 = t;
                    self.htu21d.1 = h;
                    "ok".into()
                }
                _ => "error usage: htu21d TEMP_C HUMIDITY".into(),
            },
            _ => "error commands: set PIN 0|1, get PIN, history PIN COUNT, clock, spi BUS, \
                  i2c BUS ADDR REG COUNT, htu21d TEMP_C HUMIDITY"
                .into(),
        }
    }
}

impl SimState {
    /// `chip ...` requests go to every simulated chip in turn; the first
    /// that knows the request answers it.
    fn chip_control(&mut self, words: &[&str]) -> String {
        for (_, d) in self.spi_devices.iter_mut() {
            if let Some(r) = d.control(words) {
                return r;
            }
        }
        for (_, _, d) in self.i2c_devices.iter_mut() {
            if let Some(r) = d.control(words) {
                return r;
            }
        }
        for d in self.gpio_devices.iter_mut() {
            if let Some(r) = d.control(words) {
                return r;
            }
        }
        "error no simulated chip knows that request".into()
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// SPI on the simulated board: every bus is a loopback (what is sent comes
/// back), and the last bytes sent are kept for the control socket.
pub struct SimSpi {
    state: Rc<RefCell<SimState>>,
}

impl SimSpi {
    pub fn new(state: Rc<RefCell<SimState>>) -> SimSpi {
        SimSpi { state }
    }
}

impl Spi for SimSpi {
    fn setup(&mut self, bus: u32, _mode: u8, _rate: u32) -> Result<SpiHandle, Shutdown> {
        let mut s = self.state.borrow_mut();
        let i = match s.spi_last.iter().position(|e| e.0 == bus) {
            Some(i) => i,
            None => {
                s.spi_last.push((bus, Vec::with_capacity(256)));
                s.spi_last.len() - 1
            }
        };
        Ok(SpiHandle(i as u16))
    }

    fn transfer(&mut self, h: SpiHandle, _receive: bool, data: &mut [u8]) -> Result<(), Shutdown> {
        let mut s = self.state.borrow_mut();
        let st = &mut *s;
        let (bus, last) = &mut st.spi_last[h.0 as usize];
        last.clear();
        last.extend_from_slice(data);
        let now = st.clock.now();
        if let Some((_, d)) = st.spi_devices.iter_mut().find(|d| d.0 == *bus) {
            d.transfer(now, data);
            return Ok(());
        }
        // Loopback: the received bytes are the sent ones, left in place.
        Ok(())
    }
}

/// I2C on the simulated board: register files and an HTU21D (see
/// [`has_register_file`], [`HTU21D_ADDR`]); any other address NACKs.
pub struct SimI2c {
    state: Rc<RefCell<SimState>>,
    targets: Vec<(u32, u8)>,
}

impl SimI2c {
    pub fn new(state: Rc<RefCell<SimState>>) -> SimI2c {
        SimI2c {
            state,
            targets: Vec::new(),
        }
    }
}

impl SimState {
    fn i2c_write(&mut self, bus: u32, addr: u8, data: &[u8]) -> u8 {
        let now = self.clock.now();
        if let Some((_, _, d)) = self
            .i2c_devices
            .iter_mut()
            .find(|d| d.0 == bus && d.1 == addr)
        {
            return d.write(now, data);
        }
        if bus == HTU21D_BUS && addr == HTU21D_ADDR {
            if let Some(&cmd) = data.first() {
                self.htu21d.2 = cmd;
            }
            return I2C_SUCCESS;
        }
        let Some(e) = self.i2c_regs.iter_mut().find(|e| e.0 == bus && e.1 == addr) else {
            return I2C_NACK;
        };
        if let Some((&reg, rest)) = data.split_first() {
            e.3 = reg;
            for (k, &b) in rest.iter().enumerate() {
                e.2[(reg as usize + k) & 0xff] = b;
            }
        }
        I2C_SUCCESS
    }

    fn i2c_read(&mut self, bus: u32, addr: u8, reg: &[u8], out: &mut [u8]) -> u8 {
        let now = self.clock.now();
        if let Some((_, _, d)) = self
            .i2c_devices
            .iter_mut()
            .find(|d| d.0 == bus && d.1 == addr)
        {
            return d.read(now, reg, out);
        }
        if bus == HTU21D_BUS && addr == HTU21D_ADDR {
            let word: u16 = match reg {
                // Electronic id, second part: device id 0x32 (HTU21D).
                [0xFC, 0xC9] => 0x3200,
                // User register: default resolution.
                [0xE7] => {
                    if let Some(b) = out.first_mut() {
                        *b = 0x02;
                    }
                    return I2C_SUCCESS;
                }
                _ => {
                    let (t, h, last) = self.htu21d;
                    if last == 0xE3 || last == 0xF3 {
                        (((t + 46.85) / 0.002681).clamp(0.0, 65532.0) as u16) & !0x3
                    } else {
                        ((((h + 6.0) / 0.001907).clamp(0.0, 65532.0) as u16) & !0x3) | 0x2
                    }
                }
            };
            let bytes = [(word >> 8) as u8, word as u8, htu21d_crc(word)];
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = b;
            }
            return I2C_SUCCESS;
        }
        if !reg.is_empty() {
            let st = self.i2c_write(bus, addr, reg);
            if st != I2C_SUCCESS {
                return st;
            }
        }
        let Some(e) = self.i2c_regs.iter_mut().find(|e| e.0 == bus && e.1 == addr) else {
            return I2C_START_READ_NACK;
        };
        for (k, o) in out.iter_mut().enumerate() {
            *o = e.2[(e.3 as usize + k) & 0xff];
        }
        I2C_SUCCESS
    }
}

impl I2c for SimI2c {
    fn setup(&mut self, bus: u32, addr: u8) -> Result<I2cHandle, Shutdown> {
        if let Some(i) = self.targets.iter().position(|t| *t == (bus, addr)) {
            return Ok(I2cHandle(i as u16));
        }
        if has_register_file(bus, addr) {
            let mut s = self.state.borrow_mut();
            if !s.i2c_regs.iter().any(|e| e.0 == bus && e.1 == addr) {
                s.i2c_regs.push((bus, addr, Box::new([0; 256]), 0));
            }
        }
        // Like i2c-dev: opening works for any address; a missing target
        // shows up as a NACK on the first transfer.
        self.targets.push((bus, addr));
        Ok(I2cHandle(self.targets.len() as u16 - 1))
    }

    fn write(&mut self, h: I2cHandle, data: &[u8]) -> u8 {
        let (bus, addr) = self.targets[h.0 as usize];
        self.state.borrow_mut().i2c_write(bus, addr, data)
    }

    fn read(&mut self, h: I2cHandle, reg: &[u8], out: &mut [u8]) -> u8 {
        let (bus, addr) = self.targets[h.0 as usize];
        self.state.borrow_mut().i2c_read(bus, addr, reg, out)
    }
}

/// GPIO on the simulated board.
pub struct SimGpio {
    state: Rc<RefCell<SimState>>,
}

impl SimGpio {
    pub fn new() -> SimGpio {
        let mut st = SimState::new();
        crate::hw::sim_chips::attach(&mut st);
        SimGpio {
            state: Rc::new(RefCell::new(st)),
        }
    }

    pub fn state(&self) -> Rc<RefCell<SimState>> {
        self.state.clone()
    }
}

impl Default for SimGpio {
    fn default() -> Self {
        Self::new()
    }
}

impl Gpio for SimGpio {
    fn setup_output(&mut self, pin: u32, value: bool) -> Result<GpioOut, Shutdown> {
        if pin as usize >= LINES {
            return Err(NOT_OUTPUT_PIN);
        }
        let mut s = self.state.borrow_mut();
        s.outputs[pin as usize] = true;
        s.write(pin, value);
        Ok(GpioOut { pin })
    }

    fn setup_input(&mut self, pin: u32, bias: Bias) -> Result<GpioIn, Shutdown> {
        if pin as usize >= LINES {
            return Err(NOT_INPUT_PIN);
        }
        let mut s = self.state.borrow_mut();
        let p = pin as usize;
        s.outputs[p] = false;
        s.bias[p] = Some(bias);
        // An undriven line settles where its bias pulls it.
        match bias {
            Bias::PullUp => s.levels[p] = true,
            Bias::PullDown => s.levels[p] = false,
            Bias::AsIs => {}
        }
        Ok(GpioIn { pin })
    }

    #[inline]
    fn write(&mut self, out: GpioOut, value: bool) {
        self.state.borrow_mut().write(out.pin, value);
    }

    #[inline]
    fn read(&mut self, inp: GpioIn) -> bool {
        let mut s = self.state.borrow_mut();
        if !s.gpio_devices.is_empty() {
            let now = s.clock.now();
            let st = &mut *s;
            for d in st.gpio_devices.iter_mut() {
                d.on_read(now, inp.pin, &mut st.levels);
            }
        }
        s.levels[inp.pin as usize]
    }
}

/// The simulated board's control socket: a Unix datagram socket; each
/// datagram is one request (see [`SimState::control`]), answered to the
/// sender's address.
pub struct SimControl {
    sock: UnixDatagram,
    path: PathBuf,
    state: Rc<RefCell<SimState>>,
}

impl SimControl {
    pub fn bind(path: &Path, state: Rc<RefCell<SimState>>) -> Result<SimControl, String> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            let _ = std::fs::remove_file(path);
        }
        let sock = UnixDatagram::bind(path).map_err(|e| {
            format!(
                "cannot bind the simulator control socket {}: {e}",
                path.display()
            )
        })?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("simulator control socket: {e}"))?;
        Ok(SimControl {
            sock,
            path: path.to_path_buf(),
            state,
        })
    }

    pub fn raw_fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// Answer every waiting request.
    pub fn poll(&mut self) {
        let mut buf = [0u8; 512];
        while let Ok((n, addr)) = self.sock.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..n]);
            let reply = self.state.borrow_mut().control(&req);
            if let Some(p) = addr.as_pathname() {
                let _ = self.sock.send_to(reply.as_bytes(), p);
            }
        }
    }
}

impl Drop for SimControl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_recorded_and_inputs_driven() {
        let mut g = SimGpio::new();
        let o = g.setup_output(17, false).unwrap();
        g.write(o, true);
        g.write(o, false);
        g.write(o, true);
        let st = g.state();
        assert!(st
            .borrow_mut()
            .control("get gpio17")
            .starts_with("level=1 rises=2 falls=1 output=1"));
        assert_eq!(st.borrow().history(17, 10).len(), 4);
        let i = g.setup_input(5, Bias::PullUp).unwrap();
        assert!(g.read(i));
        assert_eq!(st.borrow_mut().control("set gpio5 0"), "ok");
        assert!(!g.read(i));
        assert!(st.borrow_mut().control("set gpio17 0").starts_with("error"));
        assert!(st
            .borrow_mut()
            .control("get gpiochip1/gpio0")
            .contains("level=0"));
        assert!(g.setup_output(LINES as u32, false).is_err());
    }

    #[test]
    fn htu21d_crc_matches_the_datasheet_example() {
        // Datasheet: 0x683A -> CRC 0x7C; klippy's check agrees.
        assert_eq!(htu21d_crc(0x683A), 0x7C);
        assert_eq!(htu21d_crc(0x4E85), 0x6B);
    }

    #[test]
    fn i2c_targets() {
        let st = SimGpio::new().state();
        let mut i2c = SimI2c::new(st.clone());
        let eeprom = i2c.setup(1, 0x50).unwrap();
        assert_eq!(i2c.write(eeprom, &[0x10, 1, 2, 3]), I2C_SUCCESS);
        let mut out = [0u8; 3];
        assert_eq!(i2c.read(eeprom, &[0x10], &mut out), I2C_SUCCESS);
        assert_eq!(out, [1, 2, 3]);
        let none = i2c.setup(1, 0x23).unwrap();
        assert_eq!(i2c.write(none, &[1]), I2C_NACK);
        let htu = i2c.setup(HTU21D_BUS, HTU21D_ADDR).unwrap();
        assert_eq!(i2c.write(htu, &[0xE3]), I2C_SUCCESS);
        assert_eq!(i2c.read(htu, &[], &mut out), I2C_SUCCESS);
        let raw = u16::from_be_bytes([out[0], out[1]]);
        assert!((0.002681 * raw as f64 - 46.85 - 25.0).abs() < 0.05);
        assert_eq!(out[2], htu21d_crc(raw));
        assert_eq!(st.borrow_mut().control("i2c 1 50 16 3"), "010203");
    }
}
