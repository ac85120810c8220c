//! SPI and I2C buses: small traits, with Linux implementations on spidev
//! (`/dev/spidevB.D`, the `spidev` crate) and i2c-dev (`/dev/i2c-N`, the
//! `i2cdev` crate). The simulated ones are in [`super::sim_bus`].

use std::io::Write;
use std::path::PathBuf;

use i2c_rdwr::{LinuxI2CDevice, LinuxI2CMessage};
use spidev::{SpiModeFlags, Spidev, SpidevOptions, SpidevTransfer};

use crate::shutdown::Shutdown;

/// An opened SPI device (index into the backend's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiHandle(pub u16);

/// An opened I2C target (bus and address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I2cHandle(pub u16);

/// `i2c_bus_status` values.
pub const I2C_SUCCESS: u8 = 0;
pub const I2C_NACK: u8 = 1;
pub const I2C_BUS_TIMEOUT: u8 = 2;
pub const I2C_START_NACK: u8 = 3;
pub const I2C_START_READ_NACK: u8 = 4;

pub trait Spi {
    /// Open SPI bus `bus` (`(B << 8) | D` for spidevB.D) with a mode and rate.
    fn setup(&mut self, bus: u32, mode: u8, rate: u32) -> Result<SpiHandle, Shutdown>;
    /// Send `data`; with `receive`, replace it with what came back.
    fn transfer(&mut self, h: SpiHandle, receive: bool, data: &mut [u8]) -> Result<(), Shutdown>;
}

pub trait I2c {
    fn setup(&mut self, bus: u32, addr: u8) -> Result<I2cHandle, Shutdown>;
    /// Write `data`; returns an `i2c_bus_status`.
    fn write(&mut self, h: I2cHandle, data: &[u8]) -> u8;
    /// Write `reg` (if any), then read `out`; returns an `i2c_bus_status`.
    fn read(&mut self, h: I2cHandle, reg: &[u8], out: &mut [u8]) -> u8;
}

shutdown_reasons! {
    SPI_OPEN_FAILED = "Unable to open spi device";
    SPI_SPEED_FAILED = "Unable to set SPI speed";
    SPI_IOCTL_FAILED = "Unable to issue spi ioctl";
    SPI_WRITE_FAILED = "Unable to write to spi";
    TOO_MANY_SPI = "Too many spi devices";
    I2C_OPEN_FAILED = "Unable to open i2c device";
    TOO_MANY_I2C = "Too many i2c devices";
}

/// Most SPI devices and I2C targets open at once (as the reference).
const MAX_DEVICES: usize = 16;

/// What to do about an errno opening a device node.
pub fn fix_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            "the device node is missing: enable the bus (e.g. dtparam=spi=on / dtparam=i2c_arm=on) \
             and pass the node into the container (--device)"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "permission denied: add this user to the node's group (spi or i2c; in a container \
             --group-add with the host's gid)"
        }
        _ => "check the device node and its permissions",
    }
}

pub struct LinuxSpi {
    dev_root: PathBuf,
    /// Open nodes: the bus number, the device, and the mode and rate it
    /// is set to now.
    nodes: Vec<(u32, Spidev, u8, u32)>,
    /// Configured devices (the handles): a node and the mode and rate
    /// this device wants. Devices sharing a node (chip selects on GPIO
    /// lines) each keep their own; the node is set again when a transfer
    /// for another device comes.
    devices: Vec<(usize, u8, u32)>,
}

impl LinuxSpi {
    pub fn new(dev_root: PathBuf) -> LinuxSpi {
        LinuxSpi {
            dev_root,
            nodes: Vec::new(),
            devices: Vec::new(),
        }
    }

    /// Set node `n` to `mode` and `rate` unless it already is.
    fn configure(&mut self, n: usize, mode: u8, rate: u32) -> Result<(), Shutdown> {
        let (bus, dev, cur_mode, cur_rate) = &mut self.nodes[n];
        if (*cur_mode, *cur_rate) == (mode, rate) {
            return Ok(());
        }
        let opts = SpidevOptions::new()
            .max_speed_hz(rate)
            .mode(SpiModeFlags::from_bits_truncate(mode as u32))
            .build();
        dev.configure(&opts).map_err(|e| {
            elog!(
                "klipper_mcu: spidev{}.{}: setting mode {mode} and {rate} Hz: {e}",
                *bus >> 8,
                *bus & 0xff
            );
            SPI_SPEED_FAILED
        })?;
        (*cur_mode, *cur_rate) = (mode, rate);
        Ok(())
    }
}

impl Spi for LinuxSpi {
    fn setup(&mut self, bus: u32, mode: u8, rate: u32) -> Result<SpiHandle, Shutdown> {
        if self.devices.len() >= MAX_DEVICES * 4 {
            return Err(TOO_MANY_SPI);
        }
        let n = match self.nodes.iter().position(|d| d.0 == bus) {
            Some(n) => n,
            None => {
                if self.nodes.len() >= MAX_DEVICES {
                    return Err(TOO_MANY_SPI);
                }
                let path = self
                    .dev_root
                    .join(format!("spidev{}.{}", bus >> 8, bus & 0xff));
                let dev = Spidev::open(&path).map_err(|e| {
                    elog!(
                        "klipper_mcu: cannot open {}: {e}; {}",
                        path.display(),
                        fix_hint(&e)
                    );
                    SPI_OPEN_FAILED
                })?;
                // Not a mode any device asks for: the first setup sets it.
                self.nodes.push((bus, dev, 0xff, 0));
                self.nodes.len() - 1
            }
        };
        // Set now, as the reference does, so errors show at configuration.
        self.configure(n, mode, rate)?;
        self.devices.push((n, mode, rate));
        Ok(SpiHandle((self.devices.len() - 1) as u16))
    }

    fn transfer(&mut self, h: SpiHandle, receive: bool, data: &mut [u8]) -> Result<(), Shutdown> {
        if data.is_empty() {
            return Ok(());
        }
        let (n, mode, rate) = self.devices[h.0 as usize];
        // Another device on this node may have set its own mode and rate.
        self.configure(n, mode, rate)?;
        let dev = &mut self.nodes[n].1;
        if receive {
            let mut t = SpidevTransfer::read_write_in_place(data);
            t.speed_hz = rate;
            t.bits_per_word = 8;
            dev.transfer(&mut t).map_err(|e| {
                elog!("klipper_mcu: spi transfer: {e}");
                SPI_IOCTL_FAILED
            })
        } else {
            dev.write(data).map(|_| ()).map_err(|e| {
                elog!("klipper_mcu: spi write: {e}");
                SPI_WRITE_FAILED
            })
        }
    }
}

pub struct LinuxI2c {
    dev_root: PathBuf,
    devices: Vec<(u32, u8, LinuxI2CDevice)>,
    /// Transfer errors already reported, per device: the last errno
    /// logged, when, and how many went unlogged since.
    errors: Vec<ErrorLog>,
}

/// Rate limit for the log of a device's failing transfers: a polling
/// sensor that stopped answering must not flood stderr.
#[derive(Clone, Copy, Default)]
struct ErrorLog {
    errno: i32,
    at: Option<std::time::Instant>,
    unlogged: u32,
}

/// "; N more failures since the last report", when N > 0.
struct More(u32);

impl std::fmt::Display for More {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, "; {n} more failures since the last report"),
        }
    }
}

impl ErrorLog {
    /// Log a failed transfer unless the same error was logged within the
    /// last 10 s (the number left out is given with the next line).
    fn report(&mut self, bus: u32, addr: u8, what: &str, e: nix::errno::Errno) {
        let now = std::time::Instant::now();
        let recent = self
            .at
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(10));
        if recent && self.errno == e as i32 {
            self.unlogged = self.unlogged.saturating_add(1);
            return;
        }
        let more = std::mem::take(&mut self.unlogged);
        elog!(
            "klipper_mcu: i2c {what} on /dev/i2c-{bus} address {addr:#04x} failed: {} ({e}){}",
            e.desc(),
            More(more)
        );
        (self.errno, self.at) = (e as i32, Some(now));
    }
}

impl LinuxI2c {
    pub fn new(dev_root: PathBuf) -> LinuxI2c {
        LinuxI2c {
            dev_root,
            devices: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl I2c for LinuxI2c {
    fn setup(&mut self, bus: u32, addr: u8) -> Result<I2cHandle, Shutdown> {
        if let Some(i) = self.devices.iter().position(|d| d.0 == bus && d.1 == addr) {
            return Ok(I2cHandle(i as u16));
        }
        if self.devices.len() >= MAX_DEVICES {
            return Err(TOO_MANY_I2C);
        }
        let path = self.dev_root.join(format!("i2c-{bus}"));
        let dev = LinuxI2CDevice::new(&path, addr as u16).map_err(|io| {
            elog!(
                "klipper_mcu: cannot open {} for address {addr:#04x}: {io}; {}",
                path.display(),
                fix_hint(&io)
            );
            I2C_OPEN_FAILED
        })?;
        self.devices.push((bus, addr, dev));
        self.errors.push(ErrorLog::default());
        Ok(I2cHandle(self.devices.len() as u16 - 1))
    }

    fn write(&mut self, h: I2cHandle, data: &[u8]) -> u8 {
        let (bus, addr, dev) = &mut self.devices[h.0 as usize];
        let mut msgs = [LinuxI2CMessage::write(data)];
        match dev.transfer(&mut msgs) {
            Ok(_) => I2C_SUCCESS,
            // A status for the host, as the reference gives; the reason
            // on stderr, which the reference does not say.
            Err(e) => {
                self.errors[h.0 as usize].report(*bus, *addr, "write", e);
                I2C_NACK
            }
        }
    }

    fn read(&mut self, h: I2cHandle, reg: &[u8], out: &mut [u8]) -> u8 {
        let (bus, addr, dev) = &mut self.devices[h.0 as usize];
        let r = if reg.is_empty() {
            dev.transfer(&mut [LinuxI2CMessage::read(out)])
        } else {
            dev.transfer(&mut [LinuxI2CMessage::write(reg), LinuxI2CMessage::read(out)])
        };
        match r {
            Ok(_) => I2C_SUCCESS,
            Err(e) => {
                self.errors[h.0 as usize].report(*bus, *addr, "read", e);
                I2C_NACK
            }
        }
    }
}

/// I2C transfers through the kernel's I2C_RDWR ioctl, with nix's ioctl
/// wrapper. (The `i2cdev` crate does the same, but pulls in a second,
/// older `nix`.) Each message carries the target address, so no
/// I2C_SLAVE call is needed.
mod i2c_rdwr {
    use std::fs::{File, OpenOptions};
    use std::os::fd::AsRawFd;
    use std::path::Path;

    /// `struct i2c_msg` of linux/i2c.h.
    #[repr(C)]
    struct Msg {
        addr: u16,
        flags: u16,
        len: u16,
        buf: *mut u8,
    }

    /// `struct i2c_rdwr_ioctl_data` of linux/i2c-dev.h.
    #[repr(C)]
    struct RdwrData {
        msgs: *mut Msg,
        nmsgs: u32,
    }

    const I2C_RDWR: u16 = 0x0707;
    const I2C_M_RD: u16 = 0x0001;
    nix::ioctl_write_ptr_bad!(i2c_rdwr, I2C_RDWR, RdwrData);

    /// One message of a transfer: bytes to write, or a buffer to read.
    pub enum LinuxI2CMessage<'a> {
        Write(&'a [u8]),
        Read(&'a mut [u8]),
    }

    impl<'a> LinuxI2CMessage<'a> {
        pub fn write(data: &'a [u8]) -> Self {
            LinuxI2CMessage::Write(data)
        }
        pub fn read(data: &'a mut [u8]) -> Self {
            LinuxI2CMessage::Read(data)
        }
    }

    /// An I2C target on an opened `/dev/i2c-N`.
    pub struct LinuxI2CDevice {
        file: File,
        addr: u16,
    }

    impl LinuxI2CDevice {
        pub fn new(path: &Path, addr: u16) -> std::io::Result<LinuxI2CDevice> {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            Ok(LinuxI2CDevice { file, addr })
        }

        /// Up to two messages in one transfer (repeated start between).
        pub fn transfer(&mut self, msgs: &mut [LinuxI2CMessage]) -> nix::Result<()> {
            let mut raw: [Msg; 2] = std::array::from_fn(|_| Msg {
                addr: self.addr,
                flags: 0,
                len: 0,
                buf: std::ptr::null_mut(),
            });
            let n = msgs.len().min(2);
            for (m, r) in msgs.iter_mut().zip(raw.iter_mut()) {
                match m {
                    LinuxI2CMessage::Write(d) => {
                        r.len = d.len() as u16;
                        // The kernel only reads a write message's buffer.
                        r.buf = d.as_ptr() as *mut u8;
                    }
                    LinuxI2CMessage::Read(d) => {
                        r.flags = I2C_M_RD;
                        r.len = d.len() as u16;
                        r.buf = d.as_mut_ptr();
                    }
                }
            }
            let data = RdwrData {
                msgs: raw.as_mut_ptr(),
                nmsgs: n as u32,
            };
            // SAFETY: `data` points at `n` valid messages whose buffers
            // outlive the call and have the lengths given.
            unsafe { i2c_rdwr(self.file.as_raw_fd(), &data) }.map(|_| ())
        }
    }
}
