//! Helpers for the bus and sysfs peripheral tests (`buses.rs`): stand-in
//! sysfs trees (PWM channels, IIO ADC inputs, 1-wire devices), reading
//! them back as the kernel would see them, and reconnecting to an MCU
//! after `config_reset` re-executed it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::simboard::{Board, Scratch, TIMEOUT};

/// A temporary folder standing in for /sys (`--sysfs-root`) or /dev
/// (`--dev-root`).
pub struct Tree {
    pub dir: Scratch,
}

impl Tree {
    pub fn new(tag: &str) -> Tree {
        Tree {
            dir: Scratch::new(tag),
        }
    }

    pub fn root(&self) -> &Path {
        &self.dir.path
    }

    /// The root as a command-line argument.
    pub fn arg(&self) -> &str {
        self.dir.path.to_str().expect("a UTF-8 temp path")
    }

    /// `class/pwm/pwmchipK/pwmN/` with `period`, `duty_cycle` and `enable`
    /// holding "0\n", as an exported channel looks.
    pub fn pwm_channel(&self, chip: u32, chan: u32) -> PathBuf {
        let d = self
            .root()
            .join(format!("class/pwm/pwmchip{chip}/pwm{chan}"));
        make_pwm_files(&d);
        d
    }

    /// The BeagleBone kernel's `class/pwm/pwm-K:N/` channel folder.
    pub fn pwm_channel_bb(&self, chip: u32, chan: u32) -> PathBuf {
        let d = self.root().join(format!("class/pwm/pwm-{chip}:{chan}"));
        make_pwm_files(&d);
        d
    }

    /// `class/pwm/pwmchipK/export` (empty), without any channel folder.
    pub fn pwm_chip_export(&self, chip: u32) -> PathBuf {
        let d = self.root().join(format!("class/pwm/pwmchip{chip}"));
        std::fs::create_dir_all(&d).expect("mkdir pwmchip");
        let e = d.join("export");
        std::fs::write(&e, "").expect("create export");
        e
    }

    /// The IIO file of ADC input `chan`.
    pub fn adc_path(&self, chan: u32) -> PathBuf {
        self.root()
            .join(format!("bus/iio/devices/iio:device0/in_voltage{chan}_raw"))
    }

    /// Write ADC input `chan`'s raw value (creating the file if needed).
    pub fn set_adc(&self, chan: u32, value: u32) {
        let p = self.adc_path(chan);
        std::fs::create_dir_all(p.parent().unwrap()).expect("mkdir iio");
        write_in_place(&p, format!("{value}\n").as_bytes());
    }

    /// The `w1_slave` file of 1-wire device `serial`.
    pub fn w1_path(&self, serial: &str) -> PathBuf {
        self.root()
            .join("bus/w1/devices")
            .join(serial)
            .join("w1_slave")
    }

    /// Write a `w1_slave` report (creating the file if needed).
    pub fn set_w1(&self, serial: &str, text: &str) {
        let p = self.w1_path(serial);
        std::fs::create_dir_all(p.parent().unwrap()).expect("mkdir w1 device");
        write_in_place(&p, text.as_bytes());
    }
}

fn make_pwm_files(d: &Path) {
    std::fs::create_dir_all(d).expect("mkdir pwm channel");
    for f in ["period", "duty_cycle", "enable"] {
        std::fs::write(d.join(f), "0\n").expect("create pwm file");
    }
}

/// Replace a file's contents without replacing the file (the MCU keeps it
/// open and reads it with pread at offset 0, as it would a sysfs file).
/// One pwrite at offset 0, then the length: a reader racing with a
/// rewrite of the same length never sees an empty or partial file.
pub fn write_in_place(p: &Path, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    f.write_all_at(data, 0).expect("write");
    f.set_len(data.len() as u64).expect("set the length");
}

/// The first line of a file: sysfs writes are pwrites at offset 0 of
/// "NUMBER\n", so in a regular file a shorter number leaves the tail of a
/// longer one behind it, on the next line.
pub fn first_line(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Poll `f` until it returns true, up to [`TIMEOUT`]; `what` names it.
pub fn wait_for(b: &mut Board, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        if Instant::now() > deadline {
            b.fail(&format!("timed out waiting for {what}"));
        }
        b.pump(Duration::from_millis(10));
    }
}

/// Hex of bytes, as `HostCodec::encode_text` takes a buffer.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// After `config_reset`: wait for the re-executed MCU to link a new
/// terminal, then open it with a fresh host session and fetch the
/// dictionary.
pub fn reconnect(b: &mut Board, old_target: &Path) {
    b.connect_after(Some(old_target));
}
