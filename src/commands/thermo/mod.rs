//! Thermocouple amplifiers (MAX31855, MAX31856, MAX31865, MAX6675) and
//! the SPI angle sensors (A1333, AS5047D, TLE5012B, MT6816, MT6826S).
//!
//! Group conventions: see `crate::commands::accel`. Object kinds:
//! `Ext(32)` thermocouple readers, `Ext(33)` angle sensors; timer kinds 32
//! and 33 likewise.

pub mod spi_angle;
pub mod thermocouple;

use crate::command::{Module, Shutdown};
use crate::mcu::Mcu;
use crate::sched::{TimerId, TimerResult};

/// This group's objects, indexed as their oids' table entries say.
#[derive(Default)]
pub struct State {
    pub thermocouples: Vec<thermocouple::Thermocouple>,
    pub angles: Vec<spi_angle::SpiAngle>,
}

pub fn modules() -> Vec<&'static Module> {
    vec![&thermocouple::MODULE, &spi_angle::MODULE]
}

/// Run this group's timer `id` (kind 32-47), due at `waketime`.
pub fn run_timer(mcu: &mut Mcu, id: TimerId, _waketime: u32) -> Result<TimerResult, Shutdown> {
    let index = (id.0 & 0xffff) as usize;
    Ok(match id.0 & 0xff00_0000 {
        thermocouple::TIMER_KIND => thermocouple::run_timer(mcu, index),
        spi_angle::TIMER_KIND => spi_angle::run_timer(mcu, index),
        _ => TimerResult::Done,
    })
}

pub fn task(mcu: &mut Mcu) {
    thermocouple::task(mcu);
    spi_angle::task(mcu);
}

/// Nothing to make safe: these chips are only read. As in the reference,
/// their timers stop with every other timer.
pub fn shutdown(_mcu: &mut Mcu) {}
