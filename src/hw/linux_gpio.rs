//! GPIO through the kernel's character device (`/dev/gpiochipN`), uAPI v2:
//! one line request per line (as the reference), bias passed to the
//! kernel, consumer label "klipper". Chips are opened once, lazily.
//!
//! Everything goes through libc's `open` and `ioctl` (nix's wrappers), so
//! an LD_PRELOAD stand-in such as shared/tools/fakegpio.c can replace the
//! hardware.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::{Bias, Gpio, GpioIn, GpioOut};
use super::{
    GPIO_IN_LINE_FAILED, GPIO_NOT_FOUND, GPIO_OPEN_FAILED, GPIO_OUT_LINE_FAILED, NOT_INPUT_PIN,
    NOT_OUTPUT_PIN,
};
use crate::pins::{GPIO_CHIPS, GPIO_LINES_PER_CHIP};
use crate::shutdown::Shutdown;

const NUM_ATTRS_MAX: usize = 10;
const LINES_MAX: usize = 64;

const FLAG_INPUT: u64 = 1 << 2;
const FLAG_OUTPUT: u64 = 1 << 3;
const FLAG_BIAS_PULL_UP: u64 = 1 << 8;
const FLAG_BIAS_PULL_DOWN: u64 = 1 << 9;
const ATTR_ID_OUTPUT_VALUES: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineAttribute {
    id: u32,
    padding: u32,
    value: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineConfigAttribute {
    attr: LineAttribute,
    mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineConfig {
    flags: u64,
    num_attrs: u32,
    padding: [u32; 5],
    attrs: [LineConfigAttribute; NUM_ATTRS_MAX],
}

#[repr(C)]
struct LineRequest {
    offsets: [u32; LINES_MAX],
    consumer: [u8; 32],
    config: LineConfig,
    num_lines: u32,
    event_buffer_size: u32,
    padding: [u32; 5],
    fd: i32,
}

#[repr(C)]
#[derive(Default)]
struct LineValues {
    bits: u64,
    mask: u64,
}

nix::ioctl_readwrite!(gpio_v2_get_line, 0xB4, 0x07, LineRequest);
nix::ioctl_readwrite!(gpio_v2_line_get_values, 0xB4, 0x0E, LineValues);
nix::ioctl_readwrite!(gpio_v2_line_set_values, 0xB4, 0x0F, LineValues);

pub struct LinuxGpio {
    dev_root: PathBuf,
    chips: Vec<Option<OwnedFd>>,
    /// Line requests by pin: a line is released before it is requested
    /// again (a direction change, or a new configuration).
    lines: Vec<Option<OwnedFd>>,
}

fn fix_hint(errno: nix::errno::Errno) -> &'static str {
    match errno {
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => {
            "add this user to the chip's group (usually 'gpio'; in a container: --group-add) or add a udev rule"
        }
        nix::errno::Errno::ENOENT => "pass the device into the container (--device) or check the chip number",
        nix::errno::Errno::EBUSY => "another program holds the line; stop it or pick another pin",
        _ => "check the device and its permissions",
    }
}

impl LinuxGpio {
    pub fn new(dev_root: PathBuf) -> LinuxGpio {
        LinuxGpio {
            dev_root,
            chips: (0..GPIO_CHIPS).map(|_| None).collect(),
            lines: (0..GPIO_CHIPS * GPIO_LINES_PER_CHIP)
                .map(|_| None)
                .collect(),
        }
    }

    fn chip_fd(&mut self, chip: usize) -> Result<i32, Shutdown> {
        if let Some(fd) = &self.chips[chip] {
            return Ok(fd.as_raw_fd());
        }
        let path = self.dev_root.join(format!("gpiochip{chip}"));
        match open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(raw) => {
                // open() just returned this fd; we own it from here.
                self.chips[chip] =
                    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
                Ok(raw)
            }
            Err(e) => {
                elog!(
                    "klipper_mcu: cannot open {}: {} ({}); {}",
                    path.display(),
                    e.desc(),
                    e,
                    fix_hint(e)
                );
                Err(if e == nix::errno::Errno::ENOENT {
                    GPIO_NOT_FOUND
                } else {
                    GPIO_OPEN_FAILED
                })
            }
        }
    }

    fn request(
        &mut self,
        pin: u32,
        flags: u64,
        value: bool,
        fail: Shutdown,
    ) -> Result<i32, Shutdown> {
        let chip = (pin / GPIO_LINES_PER_CHIP) as usize;
        let offset = pin % GPIO_LINES_PER_CHIP;
        let chip_fd = self.chip_fd(chip)?;
        // Release an earlier request of this line first.
        self.lines[pin as usize] = None;
        let mut req = LineRequest {
            offsets: [0; LINES_MAX],
            consumer: [0; 32],
            config: LineConfig::default(),
            num_lines: 1,
            event_buffer_size: 0,
            padding: [0; 5],
            fd: -1,
        };
        req.offsets[0] = offset;
        req.consumer[..7].copy_from_slice(b"klipper");
        req.config.flags = flags;
        if flags & FLAG_OUTPUT != 0 {
            req.config.num_attrs = 1;
            req.config.attrs[0] = LineConfigAttribute {
                attr: LineAttribute {
                    id: ATTR_ID_OUTPUT_VALUES,
                    padding: 0,
                    value: value as u64,
                },
                mask: 1,
            };
        }
        match unsafe { gpio_v2_get_line(chip_fd, &mut req) } {
            Ok(_) if req.fd >= 0 => {
                // The kernel handed us this fd; we own it from here.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(req.fd) };
                self.lines[pin as usize] = Some(fd);
                Ok(req.fd)
            }
            Ok(_) => Err(fail),
            Err(e) => {
                elog!(
                    "klipper_mcu: cannot request line {offset} of {}: {} ({}); {}",
                    self.dev_root.join(format!("gpiochip{chip}")).display(),
                    e.desc(),
                    e,
                    fix_hint(e)
                );
                Err(fail)
            }
        }
    }
}

impl Gpio for LinuxGpio {
    fn setup_output(&mut self, pin: u32, value: bool) -> Result<GpioOut, Shutdown> {
        if pin >= GPIO_CHIPS * GPIO_LINES_PER_CHIP {
            return Err(NOT_OUTPUT_PIN);
        }
        self.request(pin, FLAG_OUTPUT, value, GPIO_OUT_LINE_FAILED)?;
        Ok(GpioOut { pin })
    }

    fn setup_input(&mut self, pin: u32, bias: Bias) -> Result<GpioIn, Shutdown> {
        if pin >= GPIO_CHIPS * GPIO_LINES_PER_CHIP {
            return Err(NOT_INPUT_PIN);
        }
        let b = match bias {
            Bias::AsIs => 0,
            Bias::PullUp => FLAG_BIAS_PULL_UP,
            Bias::PullDown => FLAG_BIAS_PULL_DOWN,
        };
        self.request(pin, FLAG_INPUT | b, false, GPIO_IN_LINE_FAILED)?;
        Ok(GpioIn { pin })
    }

    #[inline]
    fn write(&mut self, out: GpioOut, value: bool) {
        let mut v = LineValues {
            bits: value as u64,
            mask: 1,
        };
        // A failed write to a requested line has no recovery; the
        // reference ignores it too.
        if let Some(fd) = &self.lines[out.pin as usize] {
            let _ = unsafe { gpio_v2_line_set_values(fd.as_raw_fd(), &mut v) };
        }
    }

    #[inline]
    fn read(&mut self, inp: GpioIn) -> bool {
        let mut v = LineValues { bits: 0, mask: 1 };
        if let Some(fd) = &self.lines[inp.pin as usize] {
            let _ = unsafe { gpio_v2_line_get_values(fd.as_raw_fd(), &mut v) };
        }
        v.bits & 1 != 0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uapi_struct_sizes() {
        // As linux/gpio.h lays them out.
        assert_eq!(std::mem::size_of::<super::LineRequest>(), 592);
        assert_eq!(std::mem::size_of::<super::LineConfig>(), 272);
        assert_eq!(std::mem::size_of::<super::LineValues>(), 16);
    }
}
