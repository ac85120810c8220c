//! Accelerometers streaming through sensor_bulk: ADXL345 (SPI),
//! LIS2DW/LIS3DH (SPI or I2C), MPU-9250/6050 (I2C), ICM-20948 (I2C),
//! BMI160 (SPI or I2C).
//!
//! Group conventions (shared by accel, thermo, probe, display):
//! - commands live in this folder, one file per chip, format strings beside
//!   their handlers; [`modules`] lists their `Module`s;
//! - objects: each chip's own type, in its own table
//!   (`mcu.objs.push(obj)`, `mcu.oid_alloc::<T>(oid, index)`, looked up
//!   with `mcu.oid_lookup::<T>(oid)`, type-checked by the oid table);
//! - timers: `TimerId::new(callback, index)`, the callback in the chip's
//!   file; the group's task and shutdown hooks are declared in its
//!   `MODULE` (`mcu.wake_task(&super::MODULE)` runs [`task`]);
//! - [`shutdown`] puts this group's hardware in a safe state.
//!
//! Every chip works the same way, as in the reference: `query_<chip>
//! rest_ticks=N` starts a timer that fires every N ticks and marks the chip
//! pending; the task then reads the chip's FIFO over its bus and packs the
//! samples into `sensor_bulk_data` messages; `query_<chip>_status` reads
//! the FIFO level with precise timing and answers `sensor_bulk_status`.
//!
//! One difference of form: where the reference's task wakes itself again
//! while the FIFO holds more data, here the chip's timer is put back due at
//! once (the main loop does not sleep while a timer is due, and timers of
//! other objects still run between two reads), and a task pass reads a
//! few times in a row while no other timer is due.

pub mod adxl345;
pub mod bmi160;
pub mod icm20948;
pub mod lis2dw;
pub mod mpu9250;

use klipper_protocol::dictionary::EnumValue;

use crate::clock::is_before;
use crate::command::{Module, Shutdown};
use crate::commands::{i2c, spi};
use crate::hw::bus::{I2C_BUS_TIMEOUT, I2C_NACK, I2C_START_NACK, I2C_START_READ_NACK};
use crate::mcu::Mcu;
use crate::mcu::TimerId;

/// Most FIFO reads one task pass makes for one chip before it lets the
/// main loop run again (the ADXL345's FIFO holds 32 entries).
const MAX_BURST: u32 = 40;

/// The reference's `bus_oid_type` (declared by the SPI module).
pub const BUS_SPI: u32 = 0;
pub const BUS_I2C: u32 = 1;

pub const BUS_TYPE_INVALID: Shutdown = Shutdown("bus_type invalid");
const I2C_NACK_ERR: Shutdown = Shutdown("I2C NACK");
const I2C_START_NACK_ERR: Shutdown = Shutdown("I2C START NACK");
const I2C_START_READ_NACK_ERR: Shutdown = Shutdown("I2C START READ NACK");
const I2C_TIMEOUT_ERR: Shutdown = Shutdown("I2C Timeout");

/// The reference's `i2c_shutdown_on_err`.
pub fn i2c_check(status: u8) -> Result<(), Shutdown> {
    match status {
        I2C_NACK => Err(I2C_NACK_ERR),
        I2C_START_NACK => Err(I2C_START_NACK_ERR),
        I2C_START_READ_NACK => Err(I2C_START_READ_NACK_ERR),
        I2C_BUS_TIMEOUT => Err(I2C_TIMEOUT_ERR),
        _ => Ok(()),
    }
}

/// Read `out.len()` bytes at `reg` from I2C device `i`; a bus error shuts
/// down, as `i2c_dev_read` + `i2c_shutdown_on_err` do.
pub fn i2c_read(mcu: &mut Mcu, i: usize, reg: u8, out: &mut [u8]) -> Result<(), Shutdown> {
    let st = i2c::read(mcu, i, &[reg], out)?;
    i2c_check(st)
}

/// A chip reachable over SPI or I2C (LIS2DW, BMI160).
#[derive(Debug, Clone, Copy)]
pub enum BusDev {
    Spi(usize),
    I2c(usize),
}

impl BusDev {
    /// Look up `bus_oid` as the `bus_oid_type` says.
    pub fn lookup(mcu: &Mcu, bus_oid: u32, bus_type: u32) -> Result<BusDev, Shutdown> {
        match bus_type {
            BUS_SPI => Ok(BusDev::Spi(spi::lookup(mcu, bus_oid)?)),
            BUS_I2C => Ok(BusDev::I2c(i2c::lookup(mcu, bus_oid)?)),
            _ => Err(BUS_TYPE_INVALID),
        }
    }
}

pub fn modules() -> Vec<&'static Module<Mcu>> {
    vec![
        &adxl345::MODULE,
        &lis2dw::MODULE,
        &mpu9250::MODULE,
        &icm20948::MODULE,
        &bmi160::MODULE,
        &MODULE,
    ]
}

/// The group's enumerations and shared shutdown reasons.
static MODULE: Module<Mcu> = Module {
    enumerations: &[
        (
            "lis_chip_type",
            "LIS2DW",
            EnumValue::Single(lis2dw::LIS2DW as i64),
        ),
        (
            "lis_chip_type",
            "LIS3DH",
            EnumValue::Single(lis2dw::LIS3DH as i64),
        ),
    ],
    static_strings: &[
        BUS_TYPE_INVALID.0,
        I2C_NACK_ERR.0,
        I2C_START_NACK_ERR.0,
        I2C_START_READ_NACK_ERR.0,
        I2C_TIMEOUT_ERR.0,
        lis2dw::MODEL_INVALID.0,
    ],
    task: Some(task),
    shutdown: Some(shutdown),
    ..Module::EMPTY
};

/// Is a timer due (so that the task should yield to the main loop)?
fn timer_due(mcu: &Mcu) -> bool {
    mcu.timers
        .next_wake()
        .is_some_and(|t| !is_before(mcu.clock.now(), t))
}

/// Read a pending chip's FIFO: `step` reads once and tells whether more
/// data waits. When it runs dry the chip sleeps `rest_ticks`; while data
/// remains (after [`MAX_BURST`] reads, or when another timer is due) its
/// timer is put back due at once. Returns whether the chip stays pending.
fn drain(
    mcu: &mut Mcu,
    id: TimerId,
    rest_ticks: u32,
    mut step: impl FnMut(&mut Mcu) -> Result<bool, Shutdown>,
) -> Result<bool, Shutdown> {
    for _ in 0..MAX_BURST {
        if !step(mcu)? {
            let now = mcu.clock.now();
            mcu.timers.insert(id, now.wrapping_add(rest_ticks));
            return Ok(false);
        }
        if timer_due(mcu) {
            break;
        }
    }
    let now = mcu.clock.now();
    mcu.timers.insert(id, now);
    Ok(true)
}

pub fn task(mcu: &mut Mcu) {
    let r = adxl345::task(mcu)
        .and_then(|_| lis2dw::task(mcu))
        .and_then(|_| mpu9250::task(mcu))
        .and_then(|_| bmi160::task(mcu));
    if let Err(reason) = r {
        mcu.try_shutdown(reason);
    }
}

/// Nothing to drive to a safe state: the timers are gone; forget pending
/// reads so that no bus traffic follows the shutdown.
pub fn shutdown(mcu: &mut Mcu) {
    let s = &mut mcu.objs;
    s.of::<adxl345::Adxl345>()
        .iter_mut()
        .for_each(|c| c.pending = false);
    s.of::<lis2dw::Lis2dw>()
        .iter_mut()
        .for_each(|c| c.pending = false);
    s.of::<mpu9250::Mpu>()
        .iter_mut()
        .for_each(|c| c.pending = false);
    s.of::<bmi160::Bmi160>()
        .iter_mut()
        .for_each(|c| c.pending = false);
}
