//! Command families, one module each, as the reference keeps them.

pub mod base;
pub mod buttons;
pub mod counter;
pub mod debug;
pub mod endstop;
pub mod gpio;
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
        &crate::pins::MODULE,
        &crate::hw::MODULE,
    ]
}
