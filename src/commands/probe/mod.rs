//! Probing: `trigger_analog` and `sos_filter`, and the sensors that feed
//! them: HX71x load-cell ADCs (GPIO), ADS1220 and ADS131M0x (SPI), LDC1612
//! (I2C, with or without INTB), plus `analog_in_attach_trigger_analog`.
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

/// Run this group's timer `id` (kind 48-63), due at `waketime`.
pub fn run_timer(_mcu: &mut Mcu, _id: TimerId, _waketime: u32) -> Result<TimerResult, Shutdown> {
    Ok(TimerResult::Done)
}

pub fn task(_mcu: &mut Mcu) {}

pub fn shutdown(_mcu: &mut Mcu) {}

/// Feed a value to trigger_analog `ta` (an index in this group's state),
/// as `analog_in` and the probe sensors do.
pub fn trigger_analog_update(_mcu: &mut Mcu, _ta: usize, _value: i32) {}
