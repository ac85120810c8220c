//! sysfs-backed hardware: PWM channels (`class/pwm`) and ADC inputs (IIO
//! `in_voltageN_raw`). All paths live under the board's sysfs root, so
//! tests can stand a temporary folder in for /sys.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::shutdown::Shutdown;

shutdown_reasons! {
    PWM_CONFIG_FAILED = "Unable to config pwm device";
    ADC_OPEN_FAILED = "Unable to open adc device";
    ADC_READ_FAILED = "Error on analog read";
}

/// Tell stderr what failed, where, and what to do.
pub fn report(path: &Path, what: &str, e: &std::io::Error) {
    let p = path.to_string_lossy();
    let overlay = if p.contains("/w1/") {
        "dtoverlay=w1-gpio, and check the sensor's serial number"
    } else if p.contains("/iio/") {
        "an IIO ADC driver (e.g. dtoverlay=ads1015)"
    } else {
        "dtoverlay=pwm or pwm-2chan"
    };
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT) => format!("the file is missing: enable {overlay} and, in a container, mount /sys"),
        Some(libc::EACCES) | Some(libc::EPERM) => "permission denied: give this user access (a udev rule for the gpio group), or mount /sys read-write in the container".into(),
        _ => "check the device".into(),
    };
    elog!("klipper_mcu: {what} {}: {e}; {hint}", path.display());
}

/// Write a number as sysfs expects it: the whole value at offset 0.
fn write_num(f: &File, v: u64) -> std::io::Result<()> {
    let mut buf = [0u8; 24];
    let s = format_u64(v, &mut buf);
    f.write_at(s, 0).map(|_| ())
}

/// Decimal digits of `v` and a newline, without allocating.
fn format_u64(mut v: u64, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len() - 1;
    buf[i] = b'\n';
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// One hardware PWM channel.
pub struct PwmChannel {
    pub pin: u32,
    duty: File,
    enable: File,
    period_ns: u64,
    cycle_ticks: u32,
}

pub const PWM_MAX: u32 = 1 << 15;

impl PwmChannel {
    /// Open (exporting when needed) channel `chan` of `pwmchip<chip>` with a
    /// period of `cycle_ticks` and set `value`.
    pub fn open(
        sysfs: &Path,
        pin: u32,
        chip: u32,
        chan: u32,
        cycle_ticks: u32,
        value: u32,
    ) -> Result<PwmChannel, Shutdown> {
        let class = sysfs.join("class/pwm");
        let mut dir = class.join(format!("pwmchip{chip}/pwm{chan}"));
        if !dir.exists() {
            let export = class.join(format!("pwmchip{chip}/export"));
            if export.exists() {
                // Export the channel; the kernel creates its folder.
                if let Err(e) = OpenOptions::new()
                    .write(true)
                    .open(&export)
                    .and_then(|f| f.write_at(format!("{chan}\n").as_bytes(), 0))
                {
                    report(&export, "cannot export PWM channel through", &e);
                }
            }
            let bb = class.join(format!("pwm-{chip}:{chan}"));
            if !dir.exists() && bb.exists() {
                // The BeagleBone kernel's naming.
                dir = bb;
            }
        }
        let open = |name: &str| -> Result<File, Shutdown> {
            let p = dir.join(name);
            OpenOptions::new().write(true).open(&p).map_err(|e| {
                report(&p, "cannot open PWM", &e);
                PWM_CONFIG_FAILED
            })
        };
        let period = open("period")?;
        let period_ns = cycle_ticks as u64 * 20;
        let duty = open("duty_cycle")?;
        if write_num(&period, period_ns).is_err() {
            // A period below the current duty cycle is refused: clear the
            // duty cycle first.
            let _ = write_num(&duty, 0);
            write_num(&period, period_ns).map_err(|e| {
                report(&dir.join("period"), "cannot set PWM period in", &e);
                PWM_CONFIG_FAILED
            })?;
        }
        let enable = open("enable")?;
        let ch = PwmChannel {
            pin,
            duty,
            enable,
            period_ns,
            cycle_ticks,
        };
        ch.write(value);
        Ok(ch)
    }

    pub fn cycle_ticks(&self) -> u32 {
        self.cycle_ticks
    }

    /// Set the duty to `value` / PWM_MAX; zero disables the output.
    pub fn write(&self, value: u32) {
        if value == 0 {
            let _ = self.enable.write_at(b"0\n", 0);
            return;
        }
        let duty = self.period_ns * value.min(PWM_MAX) as u64 / PWM_MAX as u64;
        let _ = write_num(&self.duty, duty);
        let _ = self.enable.write_at(b"1\n", 0);
    }
}

/// One IIO ADC input.
pub struct AdcChannel {
    file: File,
    path: PathBuf,
}

impl AdcChannel {
    pub fn open(sysfs: &Path, chan: u32) -> Result<AdcChannel, Shutdown> {
        let path = sysfs.join(format!("bus/iio/devices/iio:device0/in_voltage{chan}_raw"));
        let file = File::open(&path).map_err(|e| {
            report(&path, "cannot open ADC input", &e);
            ADC_OPEN_FAILED
        })?;
        Ok(AdcChannel { file, path })
    }

    /// Read the current value.
    pub fn read(&self) -> Result<u16, Shutdown> {
        let mut buf = [0u8; 32];
        let n = self.file.read_at(&mut buf, 0).map_err(|e| {
            report(&self.path, "cannot read ADC input", &e);
            ADC_READ_FAILED
        })?;
        let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
        let digits = text.trim();
        digits
            .parse::<u32>()
            .map(|v| v.min(u16::MAX as u32) as u16)
            .map_err(|_| {
                elog!(
                    "klipper_mcu: {}: not a number: {digits:?}",
                    self.path.display()
                );
                ADC_READ_FAILED
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_without_allocation() {
        let mut b = [0u8; 24];
        assert_eq!(format_u64(0, &mut b), b"0\n");
        assert_eq!(format_u64(1234567890123, &mut b), b"1234567890123\n");
    }

    #[test]
    fn pwm_and_adc_on_a_stand_in_tree() {
        let root = std::env::temp_dir().join(format!("kmcu_sysfs_{}", std::process::id()));
        let chan = root.join("class/pwm/pwmchip0/pwm1");
        std::fs::create_dir_all(&chan).unwrap();
        for f in ["period", "duty_cycle", "enable"] {
            std::fs::write(chan.join(f), "0\n").unwrap();
        }
        let p = PwmChannel::open(&root, 65537, 0, 1, 50_000, PWM_MAX / 4).unwrap();
        let first_line = |f: &str| {
            std::fs::read_to_string(chan.join(f))
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(first_line("period"), "1000000");
        assert_eq!(first_line("duty_cycle"), "250000");
        assert_eq!(first_line("enable"), "1");
        p.write(0);
        assert_eq!(first_line("enable"), "0");
        assert!(PwmChannel::open(&root, 65538, 0, 2, 50_000, 1).is_err());

        let iio = root.join("bus/iio/devices/iio:device0");
        std::fs::create_dir_all(&iio).unwrap();
        std::fs::write(iio.join("in_voltage3_raw"), "2048\n").unwrap();
        let a = AdcChannel::open(&root, 3).unwrap();
        assert_eq!(a.read(), Ok(2048));
        assert!(AdcChannel::open(&root, 4).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
