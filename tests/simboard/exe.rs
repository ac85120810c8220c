//! The MCU the tests start: this package's `klipper_mcu`, or the binary
//! `KLIPPER_MCU_BIN` names (an ARM build, the C reference), run through
//! `KLIPPER_MCU_RUNNER` when set (e.g. `qemu-aarch64`; tests/arch.rs sets
//! both). Shared by `simboard`, `common` and `support`.

use std::path::PathBuf;
use std::process::Command;

/// The MCU binary under test.
pub fn mcu_binary() -> PathBuf {
    match std::env::var_os("KLIPPER_MCU_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_klipper_mcu")),
    }
}

/// A command that starts the MCU (arguments still to add).
pub fn mcu_command() -> Command {
    match std::env::var_os("KLIPPER_MCU_RUNNER") {
        Some(r) if !r.is_empty() => {
            let mut c = Command::new(r);
            c.arg(mcu_binary());
            c
        }
        _ => Command::new(mcu_binary()),
    }
}
