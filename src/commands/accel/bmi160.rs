//! BMI160 on SPI or I2C (the reference's sensor_bmi160.c): FIFO_LENGTH is
//! read, then whole 48-byte blocks of FIFO_DATA (accelerometer-only,
//! header-less frames) straight into `sensor_bulk_data` messages.

use crate::command::{Args, CmdResult, Command, Module, Shutdown};
use crate::commands::sensor_bulk::SensorBulk;
use crate::commands::spi;
use crate::mcu::Mcu;
use crate::mcu::TimerId;
use crate::sched::TimerResult;

use super::{drain, i2c_read, BusDev};

const AM_READ: u8 = 0x80;
const FIFO_STATUS: u8 = 0x22;
const FIFO_DATA: u8 = 0x24;
const BYTES_PER_BLOCK: usize = 48;
/// The chip's FIFO size: a longer count means data was lost.
const FIFO_SIZE: u16 = 1024;

pub struct Bmi160 {
    oid: u8,
    bus: BusDev,
    rest_ticks: u32,
    pub(super) pending: bool,
    fifo_bytes_pending: u16,
    sb: SensorBulk,
}

fn lookup(mcu: &Mcu, oid: u32) -> Result<usize, Shutdown> {
    mcu.oid_lookup::<Bmi160>(oid).map(|i| i as usize)
}

fn timer_id(i: usize) -> TimerId {
    TimerId::new(event, i as u32)
}

/// The chip's timer only marks it pending and wakes the group's task (the
/// reference's `*_event`).
fn event(mcu: &mut Mcu, i: u32, _waketime: u32) -> Result<TimerResult, Shutdown> {
    if let Some(c) = mcu.objs.of::<Bmi160>().get_mut(i as usize) {
        c.pending = true;
        mcu.wake_task(&super::MODULE);
    }
    Ok(TimerResult::Done)
}

fn config_bmi160(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, bus_oid, bus_oid_type);
    let index = mcu.objs.of::<Bmi160>().len() as u16;
    mcu.oid_alloc::<Bmi160>(oid, index)?;
    let bus = BusDev::lookup(mcu, bus_oid, bus_oid_type)?;
    mcu.objs.push(Bmi160 {
        oid: oid as u8,
        bus,
        rest_ticks: 0,
        pending: false,
        fifo_bytes_pending: 0,
        sb: SensorBulk::default(),
    });
    Ok(())
}

fn update_fifo_status(ax: &mut Bmi160, fifo_bytes: u16) {
    if fifo_bytes > FIFO_SIZE {
        ax.sb.possible_overflows = ax.sb.possible_overflows.wrapping_add(1);
    }
    ax.fifo_bytes_pending = fifo_bytes;
}

/// FIFO_LENGTH_0/1 (little-endian, not masked, as the reference).
fn read_fifo_length(mcu: &mut Mcu, bus: BusDev) -> Result<u16, Shutdown> {
    match bus {
        BusDev::Spi(s) => {
            let mut msg = [FIFO_STATUS | AM_READ, 0, 0];
            spi::transfer(mcu, s, true, &mut msg)?;
            Ok(u16::from_le_bytes([msg[1], msg[2]]))
        }
        BusDev::I2c(d) => {
            let mut v = [0u8; 2];
            i2c_read(mcu, d, FIFO_STATUS, &mut v)?;
            Ok(u16::from_le_bytes(v))
        }
    }
}

fn read_fifo_block(mcu: &mut Mcu, i: usize) -> CmdResult {
    let mut block = [0u8; BYTES_PER_BLOCK];
    match mcu.objs.of::<Bmi160>()[i].bus {
        BusDev::Spi(s) => {
            let mut msg = [0u8; BYTES_PER_BLOCK + 1];
            msg[0] = FIFO_DATA | AM_READ;
            spi::transfer(mcu, s, true, &mut msg)?;
            block.copy_from_slice(&msg[1..]);
        }
        BusDev::I2c(d) => i2c_read(mcu, d, FIFO_DATA, &mut block)?,
    }
    let ax = &mut mcu.objs.of::<Bmi160>()[i];
    ax.sb.data_count = 0;
    ax.sb.push(&block);
    let (mut sb, oid) = (ax.sb, ax.oid);
    sb.report(mcu, oid);
    let ax = &mut mcu.objs.of::<Bmi160>()[i];
    ax.sb = sb;
    ax.fifo_bytes_pending = ax.fifo_bytes_pending.wrapping_sub(BYTES_PER_BLOCK as u16);
    Ok(())
}

fn query(mcu: &mut Mcu, i: usize) -> Result<bool, Shutdown> {
    if (mcu.objs.of::<Bmi160>()[i].fifo_bytes_pending as usize) < BYTES_PER_BLOCK {
        let n = read_fifo_length(mcu, mcu.objs.get::<Bmi160>()[i].bus)?;
        update_fifo_status(&mut mcu.objs.of::<Bmi160>()[i], n);
    }
    if mcu.objs.of::<Bmi160>()[i].fifo_bytes_pending as usize >= BYTES_PER_BLOCK {
        read_fifo_block(mcu, i)?;
    }
    Ok(mcu.objs.of::<Bmi160>()[i].fifo_bytes_pending as usize >= BYTES_PER_BLOCK)
}

fn query_bmi160(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, rest_ticks);
    let i = lookup(mcu, oid)?;
    mcu.timers.remove(timer_id(i));
    let ax = &mut mcu.objs.of::<Bmi160>()[i];
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

fn query_bmi160_status(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid);
    let i = lookup(mcu, oid)?;
    let bus = mcu.objs.of::<Bmi160>()[i].bus;
    let time1 = mcu.clock.now();
    let n = read_fifo_length(mcu, bus)?;
    let time2 = mcu.clock.now();
    let ax = &mut mcu.objs.of::<Bmi160>()[i];
    update_fifo_status(ax, n);
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
    for i in 0..mcu.objs.of::<Bmi160>().len() {
        if !mcu.objs.of::<Bmi160>()[i].pending {
            continue;
        }
        let rest = mcu.objs.of::<Bmi160>()[i].rest_ticks;
        let more = drain(mcu, timer_id(i), rest, |m| query(m, i))?;
        mcu.objs.of::<Bmi160>()[i].pending = more;
    }
    Ok(())
}

static COMMANDS: &[Command<Mcu>] = crate::commands![
    "config_bmi160 oid=%c bus_oid=%c bus_oid_type=%c" => config_bmi160,
    "query_bmi160 oid=%c rest_ticks=%u" => query_bmi160,
    "query_bmi160_status oid=%c" => query_bmi160_status,
];

pub static MODULE: Module<Mcu> = Module {
    commands: COMMANDS,
    ..Module::EMPTY
};
