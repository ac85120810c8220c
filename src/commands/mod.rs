//! Command families, one module each, as the reference keeps them.

pub mod base;
pub mod debug;

use crate::command::Module;

/// Every command family of this build, in dictionary order.
pub fn modules() -> Vec<&'static Module> {
    vec![
        &crate::mcu::MODULE,
        &base::MODULE,
        &debug::MODULE,
        &crate::pins::MODULE,
    ]
}
