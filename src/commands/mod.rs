//! Command families, one module each, as the reference keeps them.

pub mod base;
pub mod debug;
pub mod gpio;

use crate::command::Module;

/// Every command family of this build, in dictionary order.
pub fn modules() -> Vec<&'static Module> {
    vec![
        &crate::mcu::MODULE,
        &base::MODULE,
        &debug::MODULE,
        &gpio::MODULE,
        &crate::pins::MODULE,
        &crate::hw::MODULE,
    ]
}
