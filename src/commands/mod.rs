//! Command families, one module each, as the reference keeps them.

pub mod accel;
pub mod adc;
pub mod base;
pub mod buttons;
pub mod counter;
pub mod debug;
pub mod display;
pub mod ds18b20;
pub mod endstop;
pub mod gpio;
pub mod i2c;
pub mod pca9685;
pub mod probe;
pub mod pwm;
pub mod sensor_bulk;
pub mod spi;
pub mod stepper;
pub mod thermo;
pub mod trsync;

use crate::command::Module;

/// Every command family of this build, in dictionary order.
pub fn modules() -> Vec<&'static Module> {
    let mut m = vec![
        &crate::mcu::MODULE,
        &base::MODULE,
        &debug::MODULE,
        &gpio::MODULE,
        &stepper::MODULE,
        &endstop::MODULE,
        &trsync::MODULE,
        &buttons::MODULE,
        &counter::MODULE,
        &spi::MODULE,
        &i2c::MODULE,
        &pwm::MODULE,
        &adc::MODULE,
        &pca9685::MODULE,
        &ds18b20::MODULE,
        &crate::pins::MODULE,
        &crate::hw::MODULE,
        &crate::hw::BUS_MODULE,
        &crate::hw::SYSFS_MODULE,
        &SENSOR_BULK,
    ];
    m.extend(accel::modules());
    m.extend(thermo::modules());
    m.extend(probe::modules());
    m.extend(display::modules());
    m
}

/// Which host's message forms to serve where the two disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Upstream Klipper's (the reference's) forms.
    Klipper,
    /// Kalico 2026.10's: the older `query_analog_in`/`analog_in_state`
    /// and `config_ds18b20` with `ignore_limits`.
    Kalico,
}

/// The commands and responses that replace the reference's for a dialect.
/// A dictionary holds one form per message name, and klippy's encoder
/// refuses both a missing and an extra parameter, so one form cannot
/// serve both hosts for these messages.
pub fn dialect_overrides(d: Dialect) -> Vec<&'static Module> {
    match d {
        Dialect::Klipper => vec![],
        Dialect::Kalico => vec![&adc::KALICO, &ds18b20::KALICO],
    }
}

/// The bulk-sensor responses, shared by several groups.
static SENSOR_BULK: Module = Module {
    commands: &[],
    responses: &[
        &sensor_bulk::SENSOR_BULK_DATA,
        &sensor_bulk::SENSOR_BULK_STATUS,
    ],
    constants: &[],
    enumerations: &[],
    static_strings: &[],
};
