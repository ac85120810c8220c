//! Displays and bit-banged devices: HD44780 and ST7920 (GPIO), `tmcuart`
//! (single-wire UART to TMC drivers on GPIO), `neopixel`.
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

/// Run this group's timer `id` (kind 64-79), due at `waketime`.
pub fn run_timer(_mcu: &mut Mcu, _id: TimerId, _waketime: u32) -> Result<TimerResult, Shutdown> {
    Ok(TimerResult::Done)
}

pub fn task(_mcu: &mut Mcu) {}

pub fn shutdown(_mcu: &mut Mcu) {}
