//! LIS2DW and LIS3DH on SPI or I2C (the reference's sensor_lis2dw.c): the
//! FIFO is read 8 samples (48 bytes, the chip's raw OUT_X_L..OUT_Z_H) at a
//! time, straight into one `sensor_bulk_data` message.

use crate::command::{Args, CmdResult, Command, Module, Shutdown};
use crate::commands::sensor_bulk::SensorBulk;
use crate::commands::spi;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

use super::{drain, i2c_read, BusDev};

/// `lis_chip_type` values.
pub const LIS2DW: u32 = 0;
pub const LIS3DH: u32 = 1;

pub const MODEL_INVALID: Shutdown = Shutdown("model type invalid");

const AR_DATAX0: u8 = 0x28;
const AM_READ: u8 = 0x80;
/// Address auto-increment: bit 6 of the SPI command, bit 7 of the I2C
/// sub-address (LIS3DH only; the LIS2DW increments by default).
const MS_SPI: u8 = 0x40;
const MS_I2C: u8 = 0x80;
const FIFO_SAMPLES: u8 = 0x2F;
const BYTES_PER_SAMPLE: u8 = 6;
const BYTES_PER_BLOCK: usize = 48;

pub struct Lis2dw {
    oid: u8,
    bus: BusDev,
    model: u32,
    rest_ticks: u32,
    pub(super) pending: bool,
    /// FIFO bytes known to wait in the chip (8 bits, as the reference).
    fifo_bytes_pending: u8,
    sb: SensorBulk,
}

fn lookup(mcu: &Mcu, oid: u32) -> Result<usize, Shutdown> {
    mcu.oid_lookup::<Lis2dw>(oid).map(|i| i as usize)
}

fn timer_id(i: usize) -> TimerId {
    TimerId::new(event, i as u32)
}

/// The chip's timer only marks it pending and wakes the group's task (the
/// reference's `*_event`).
fn event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    if let Some(c) = mcu.objs.of::<Lis2dw>().get_mut(i as usize) {
        c.pending = true;
        mcu.wake_task(&super::MODULE);
    }
    Ok(TimerResult::Done)
}

fn config_lis2dw(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, bus_oid, bus_oid_type, lis_chip_type);
    let index = mcu.objs.of::<Lis2dw>().len() as u16;
    mcu.oid_alloc::<Lis2dw>(oid, index)?;
    let bus = BusDev::lookup(mcu, bus_oid, bus_oid_type)?;
    let model = lis_chip_type;
    if model != LIS2DW && model != LIS3DH {
        return Err(MODEL_INVALID);
    }
    mcu.objs.push(Lis2dw {
        oid: oid as u8,
        bus,
        model,
        rest_ticks: 0,
        pending: false,
        fifo_bytes_pending: 0,
        sb: SensorBulk::default(),
    });
    Ok(())
}

/// Account a FIFO_SAMPLES (FIFO_SRC_REG on the LIS3DH) value.
fn update_fifo_status(ax: &mut Lis2dw, fifo_status: u8) {
    if fifo_status & 0x40 != 0 {
        ax.sb.possible_overflows = ax.sb.possible_overflows.wrapping_add(1);
    }
    let pending = if ax.model == LIS3DH {
        if fifo_status & 0x20 != 0 {
            0 // EMPTY
        } else {
            fifo_status & 0x1F
        }
    } else {
        fifo_status & 0x3F
    };
    ax.fifo_bytes_pending = pending.wrapping_mul(BYTES_PER_SAMPLE);
}

/// Read the FIFO level register (timed by the caller).
fn read_fifo_status(mcu: &mut Mcu, bus: BusDev) -> Result<u8, Shutdown> {
    match bus {
        BusDev::Spi(s) => {
            let mut msg = [FIFO_SAMPLES | AM_READ, 0];
            spi::transfer(mcu, s, true, &mut msg)?;
            Ok(msg[1])
        }
        BusDev::I2c(d) => {
            let mut v = [0u8];
            i2c_read(mcu, d, FIFO_SAMPLES, &mut v)?;
            Ok(v[0])
        }
    }
}

fn read_fifo_block(mcu: &mut Mcu, i: usize) -> CmdResult {
    let (bus, model) = (
        mcu.objs.of::<Lis2dw>()[i].bus,
        mcu.objs.of::<Lis2dw>()[i].model,
    );
    let mut block = [0u8; BYTES_PER_BLOCK];
    match bus {
        BusDev::Spi(s) => {
            let mut msg = [0u8; BYTES_PER_BLOCK + 1];
            msg[0] = AR_DATAX0 | AM_READ;
            if model == LIS3DH {
                msg[0] |= MS_SPI;
            }
            spi::transfer(mcu, s, true, &mut msg)?;
            block.copy_from_slice(&msg[1..]);
        }
        BusDev::I2c(d) => {
            let mut reg = AR_DATAX0;
            if model == LIS3DH {
                reg |= MS_I2C;
            }
            i2c_read(mcu, d, reg, &mut block)?;
        }
    }
    let ax = &mut mcu.objs.of::<Lis2dw>()[i];
    ax.sb.data_count = 0;
    ax.sb.push(&block);
    let (mut sb, oid) = (ax.sb, ax.oid);
    sb.report(mcu, oid);
    let ax = &mut mcu.objs.of::<Lis2dw>()[i];
    ax.sb = sb;
    ax.fifo_bytes_pending = ax.fifo_bytes_pending.wrapping_sub(BYTES_PER_BLOCK as u8);
    Ok(())
}

/// One pass of the reference's `lis2dw_query`; whether a full block waits.
fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
    if (mcu.objs.of::<Lis2dw>()[i].fifo_bytes_pending as usize) < BYTES_PER_BLOCK {
        let st = read_fifo_status(mcu, mcu.objs.get::<Lis2dw>()[i].bus)?;
        update_fifo_status(&mut mcu.objs.of::<Lis2dw>()[i], st);
    }
    if mcu.objs.of::<Lis2dw>()[i].fifo_bytes_pending as usize >= BYTES_PER_BLOCK {
        read_fifo_block(mcu, i)?;
    }
    Ok(mcu.objs.of::<Lis2dw>()[i].fifo_bytes_pending as usize >= BYTES_PER_BLOCK)
}

fn query_lis2dw(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let i = lookup(mcu, oid)?;
    mcu.timers.remove(timer_id(i));
    let ax = &mut mcu.objs.of::<Lis2dw>()[i];
    ax.pending = false;
    if rest_ticks == 0 {
        return Ok(());
    }
    ax.rest_ticks = rest_ticks;
    ax.fifo_bytes_pending = 0;
    ax.sb.reset();
    let now = mcu.clock.now();
    mcu.timers.insert(timer_id(i), now.wrapping_add(rest_ticks));
    Ok(())
}

fn query_lis2dw_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = lookup(mcu, oid)?;
    let bus = mcu.objs.of::<Lis2dw>()[i].bus;
    let time1 = mcu.clock.now();
    let st = read_fifo_status(mcu, bus)?;
    let time2 = mcu.clock.now();
    let ax = &mut mcu.objs.of::<Lis2dw>()[i];
    update_fifo_status(ax, st);
    let (sb, pending) = (ax.sb, ax.fifo_bytes_pending);
    sb.status(
        mcu,
        oid as u8,
        time1,
        time2.wrapping_sub(time1),
        pending as u32,
    );
    Ok(())
}

pub(super) fn task(mcu: &mut Mcu) -> CmdResult {
    for i in 0..mcu.objs.of::<Lis2dw>().len() {
        if !mcu.objs.of::<Lis2dw>()[i].pending {
            continue;
        }
        let rest = mcu.objs.of::<Lis2dw>()[i].rest_ticks;
        let more = drain(mcu, timer_id(i), rest, |m| query(m, i))?;
        mcu.objs.of::<Lis2dw>()[i].pending = more;
    }
    Ok(())
}

static COMMANDS: &[Command<Mcu>] = crate::commands![
    "config_lis2dw oid=%c bus_oid=%c bus_oid_type=%c lis_chip_type=%c" => config_lis2dw,
    "query_lis2dw oid=%c rest_ticks=%u" => query_lis2dw,
    "query_lis2dw_status oid=%c" => query_lis2dw_status,
];

pub static MODULE: Module<Mcu> = Module {
    commands: COMMANDS,
    ..Module::EMPTY
};
