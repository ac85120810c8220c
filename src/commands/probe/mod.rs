//! Probing: `trigger_analog` and `sos_filter`, and the sensors that feed
//! them: HX71x load-cell ADCs (GPIO), ADS1220 and ADS131M0x (SPI), LDC1612
//! (I2C, with or without INTB), plus `analog_in_attach_trigger_analog`.
//!
//! Group conventions: see `crate::commands::accel`; each file declares its
//! own `MODULE` with its hooks.

pub mod ads1220;
pub mod hx71x;
pub mod ldc1612;
pub mod sos_filter;
pub mod trigger_analog;

use crate::command::Module;
use crate::mcu::Mcu;

pub fn modules() -> Vec<&'static Module<Mcu>> {
    vec![
        &sos_filter::MODULE,
        &trigger_analog::MODULE,
        &hx71x::MODULE,
        &ads1220::MODULE,
        &ldc1612::MODULE,
    ]
}

/// Feed a value to trigger_analog `ta` (an index in this group's state),
/// as `analog_in` and the probe sensors do.
pub fn trigger_analog_update(mcu: &mut Mcu, ta: usize, value: i32) {
    trigger_analog::update(mcu, ta, value);
}
