//! Thermocouple amplifiers (MAX31855, MAX31856, MAX31865, MAX6675) and
//! the SPI angle sensors (A1333, AS5047D, TLE5012B, MT6816, MT6826S).
//!
//! Group conventions: see `crate::commands::accel`; each file declares its
//! own task in its `MODULE`. As in the reference, nothing needs making safe
//! at shutdown: these chips are only read, and their timers stop with
//! every other timer.

pub mod spi_angle;
pub mod thermocouple;

use crate::command::Module;
use crate::mcu::Mcu;

pub fn modules() -> Vec<&'static Module<Mcu>> {
    vec![&thermocouple::MODULE, &spi_angle::MODULE]
}
