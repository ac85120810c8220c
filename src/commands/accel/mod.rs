//! Accelerometers streaming through sensor_bulk: ADXL345 (SPI),
//! LIS2DW/LIS3DH (SPI or I2C), MPU-9250/6050 (I2C), ICM-20948 (I2C),
//! BMI160 (SPI or I2C).
//!
//! Group conventions (shared by accel, thermo, probe, display):
//! - commands live in this folder, one file per chip, format strings beside
//!   their handlers; [`modules`] lists their `Module`s;
//! - objects: `mcu.oid_alloc(oid, ObjKind::Ext(K), index)` with K in this
//!   group's range (accel 0-31, thermo 32-63, probe 64-95, display 96-127)
//!   and the object stored in this group's [`State`] (`mcu.accel`);
//! - timers: `TimerId(kind << 24 | index)` with kind in this group's range
//!   (accel 16-31, thermo 32-47, probe 48-63, display 64-79), dispatched
//!   by [`run_timer`]; tasks: `mcu.wake_task(TASK_ACCEL)` runs [`task`];
//! - [`shutdown`] puts this group's hardware in a safe state.

use crate::command::{Module, Shutdown};
use crate::mcu::Mcu;
use crate::sched::{TimerId, TimerResult};

/// This group's objects.
#[derive(Default)]
pub struct State {}

pub fn modules() -> Vec<&'static Module> {
    vec![]
}

/// Run this group's timer `id` (kind 16-31), due at `waketime`.
pub fn run_timer(_mcu: &mut Mcu, _id: TimerId, _waketime: u32) -> Result<TimerResult, Shutdown> {
    Ok(TimerResult::Done)
}

pub fn task(_mcu: &mut Mcu) {}

pub fn shutdown(_mcu: &mut Mcu) {}
