//! Accelerometers streaming through sensor_bulk: ADXL345 (SPI),
//! LIS2DW/LIS3DH (SPI or I2C), MPU-9250/6050 (I2C), ICM-20948 (I2C),
//! BMI160 (SPI or I2C).
//!
//! Group conventions (shared by accel, thermo, probe, display):
//! - commands live in this folder, one file per chip, format strings beside
//!   their handlers; [`modules`] lists their `Module`s;
//! - objects: each chip's own type, in its own table
//!   (`mcu.oid_new::<T>(oid)` then `mcu.objs.push(obj)`, looked up
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

use crate::clock::is_before;
use crate::command::{CmdResult, Module, Shutdown};
use crate::commands::sensor_bulk::SensorBulk;
use crate::commands::{i2c, spi};
use crate::hw::bus::{I2C_BUS_TIMEOUT, I2C_NACK, I2C_START_NACK, I2C_START_READ_NACK};
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::{TimerFn, TimerResult};

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
    enumerations: crate::enumerations! {
        "lis_chip_type" {
            "LIS2DW" = lis2dw::LIS2DW, "LIS3DH" = lis2dw::LIS3DH,
        },
    },
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

/// The streaming state every chip keeps.
#[derive(Default)]
pub struct Stream {
    pub oid: u8,
    pub rest_ticks: u32,
    /// Its timer fired: the task reads the FIFO.
    pub pending: bool,
    /// FIFO bytes known to wait in the chip.
    pub fifo_bytes: u16,
    pub sb: SensorBulk,
}

impl Stream {
    pub fn new(oid: u32) -> Stream {
        Stream {
            oid: oid as u8,
            ..Stream::default()
        }
    }
}

/// What differs between the chips; the timer, `query_*`,
/// `query_*_status` and the task are shared (below).
pub trait Chip: Sized + 'static {
    /// The chip's timer callback, a plain function of its file calling
    /// [`mark_pending`] (one address per chip, so the timer can be found
    /// again).
    const EVENT: TimerFn<Mcu>;
    fn stream(&mut self) -> &mut Stream;
    /// One FIFO read (the reference's `*_query`); whether more data waits.
    fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown>;
    /// Read the FIFO level for `query_*_status` (timed by the caller);
    /// the bytes it holds, or `None` when the reading is not to be
    /// answered (the host asks again).
    fn level(mcu: &mut Mcu, i: usize) -> Result<Option<u32>, Shutdown>;
    /// Before the timed level read of `query_*_status`.
    fn before_status(_mcu: &mut Mcu, _i: usize) -> CmdResult {
        Ok(())
    }
}

fn stream<T: Chip>(mcu: &mut Mcu, i: usize) -> &mut Stream {
    mcu.objs.of::<T>()[i].stream()
}

fn timer_of<T: Chip>(i: usize) -> TimerId {
    TimerId::new(T::EVENT, i as u32)
}

/// A chip's timer only marks it pending and wakes the group's task (the
/// reference's `*_event`).
pub fn mark_pending<T: Chip>(mcu: &mut Mcu, i: u32) -> Result<TimerResult, Shutdown> {
    if let Some(c) = mcu.objs.of::<T>().get_mut(i as usize) {
        c.stream().pending = true;
        mcu.wake_task(&MODULE);
    }
    Ok(TimerResult::Done)
}

/// `query_<chip> rest_ticks=N`: start (or, with 0, stop) streaming.
pub fn query_cmd<T: Chip>(mcu: &mut Mcu, i: usize, rest_ticks: u32) -> CmdResult {
    mcu.timers.remove(timer_of::<T>(i));
    let st = stream::<T>(mcu, i);
    st.pending = false;
    if rest_ticks == 0 {
        return Ok(());
    }
    st.rest_ticks = rest_ticks;
    st.fifo_bytes = 0;
    st.sb.reset();
    let now = mcu.clock.now();
    mcu.timers
        .insert(timer_of::<T>(i), now.wrapping_add(rest_ticks));
    Ok(())
}

/// `query_<chip>_status`: the FIFO level, read with precise timing.
pub fn status_cmd<T: Chip>(mcu: &mut Mcu, i: usize) -> CmdResult {
    T::before_status(mcu, i)?;
    let time1 = mcu.clock.now();
    let level = T::level(mcu, i)?;
    let time2 = mcu.clock.now();
    let Some(fifo) = level else {
        return Ok(());
    };
    let st = stream::<T>(mcu, i);
    let (sb, oid) = (st.sb, st.oid);
    sb.status(mcu, oid, time1, time2.wrapping_sub(time1), fifo);
    Ok(())
}

/// Send `block` as one `sensor_bulk_data` message.
pub fn report_block<T: Chip>(mcu: &mut Mcu, i: usize, block: &[u8]) {
    let st = stream::<T>(mcu, i);
    st.sb.data_count = 0;
    st.sb.push(block);
    let (mut sb, oid) = (st.sb, st.oid);
    sb.report(mcu, oid);
    stream::<T>(mcu, i).sb = sb;
}

/// FIFO blocks of the LIS2DW, BMI160, MPU-9250 and ICM-20948: 48 bytes of
/// raw samples, sent as read.
pub const BLOCK: usize = 48;

/// The query of the block-FIFO chips: read the level when less than a
/// block is known to wait (`read_level` updates `fifo_bytes`), then one
/// block straight into a message.
pub fn block_query<T: Chip>(
    mcu: &mut Mcu,
    i: usize,
    read_level: fn(&mut Mcu, usize) -> CmdResult,
    read_block: fn(&mut Mcu, usize, &mut [u8; BLOCK]) -> CmdResult,
) -> Result<bool, Shutdown> {
    if (stream::<T>(mcu, i).fifo_bytes as usize) < BLOCK {
        read_level(mcu, i)?;
    }
    if stream::<T>(mcu, i).fifo_bytes as usize >= BLOCK {
        let mut block = [0u8; BLOCK];
        read_block(mcu, i, &mut block)?;
        report_block::<T>(mcu, i, &block);
        let st = stream::<T>(mcu, i);
        st.fifo_bytes = st.fifo_bytes.wrapping_sub(BLOCK as u16);
    }
    Ok(stream::<T>(mcu, i).fifo_bytes as usize >= BLOCK)
}

/// The task's pass over one chip type's pending chips.
fn task_of<T: Chip>(mcu: &mut Mcu) -> CmdResult {
    for i in 0..mcu.objs.of::<T>().len() {
        if !stream::<T>(mcu, i).pending {
            continue;
        }
        let rest = stream::<T>(mcu, i).rest_ticks;
        let more = drain(mcu, timer_of::<T>(i), rest, |m| T::query(m, i))?;
        stream::<T>(mcu, i).pending = more;
    }
    Ok(())
}

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
    let r = task_of::<adxl345::Adxl345>(mcu)
        .and_then(|_| task_of::<lis2dw::Lis2dw>(mcu))
        .and_then(|_| task_of::<mpu9250::Mpu>(mcu))
        .and_then(|_| task_of::<bmi160::Bmi160>(mcu));
    if let Err(reason) = r {
        mcu.try_shutdown(reason);
    }
}

/// Nothing to drive to a safe state: the timers are gone; forget pending
/// reads so that no bus traffic follows the shutdown.
pub fn shutdown(mcu: &mut Mcu) {
    fn stop<T: Chip>(mcu: &mut Mcu) {
        for c in mcu.objs.of::<T>() {
            c.stream().pending = false;
        }
    }
    stop::<adxl345::Adxl345>(mcu);
    stop::<lis2dw::Lis2dw>(mcu);
    stop::<mpu9250::Mpu>(mcu);
    stop::<bmi160::Bmi160>(mcu);
}
