//! Command families, one module each, as the reference keeps them.

pub mod adc;
pub mod base;
pub mod buttons;
pub mod counter;
pub mod debug;
pub mod ds18b20;
pub mod endstop;
pub mod gpio;
pub mod i2c;
pub mod pca9685;
pub mod pwm;
pub mod spi;
pub mod stepper;
pub mod trsync;

use crate::command::Module;

/// Every command family of this build, in dictionary order.
pub fn modules() -> Vec<&'static Module> {
    vec![
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
    ]
}
