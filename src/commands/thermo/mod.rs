//! Thermocouple amplifiers (MAX31855, MAX31856, MAX31865, MAX6675) and
//! the SPI angle sensors (A1333, AS5047D, TLE5012B, MT6816, MT6826S).
//!
//! Group conventions: see `crate::commands::accel`.

use crate::command::{Module, Shutdown};
use crate::mcu::Mcu;
use crate::sched::{TimerId, TimerResult};

/// This group's objects.
#[derive(Default)]
pub struct State {}

pub fn modules() -> Vec<&'static Module> {
    vec![]
}

/// Run this group's timer `id` (kind 32-47), due at `waketime`.
pub fn run_timer(_mcu: &mut Mcu, _id: TimerId, _waketime: u32) -> Result<TimerResult, Shutdown> {
    Ok(TimerResult::Done)
}

pub fn task(_mcu: &mut Mcu) {}

pub fn shutdown(_mcu: &mut Mcu) {}
